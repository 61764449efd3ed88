package render

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/svctrace/svctrace/trace"
)

// traceJSON writes a trace as json.MarshalIndent would, byte for byte, but hop by hop: a Service
// with 10,000 endpoints has a tree of 100,000 hops, tens of megabytes of JSON that were built
// whole, indented into a second copy and copied again to print.
func traceJSON(w io.Writer, res *trace.Result) error {
	top := *res
	top.Hops = nil
	head, err := json.MarshalIndent(&top, "", "  ")
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	if res.Hops != nil {
		const marker = "\n  \"hops\": null"
		i := bytes.Index(head, []byte(marker))
		if i < 0 {
			return fmt.Errorf("internal error: no hops field in the trace document")
		}
		bw.Write(head[:i+len(marker)-len("null")])
		if err := hopsJSON(bw, res.Hops, "  "); err != nil {
			return err
		}
		head = head[i+len(marker):]
	}
	bw.Write(head)
	bw.WriteByte('\n')
	return bw.Flush()
}

// hopsJSON writes a list of hops at the given indentation, children recursively.
func hopsJSON(bw *bufio.Writer, hops []*trace.Hop, indent string) error {
	if len(hops) == 0 {
		bw.WriteString("[]")
		return nil
	}
	inner := indent + "  "
	bw.WriteString("[\n")
	for i, h := range hops {
		flat := *h
		flat.Children = nil
		b, err := json.MarshalIndent(&flat, inner, "  ")
		if err != nil {
			return err
		}
		bw.WriteString(inner)
		if len(h.Children) == 0 {
			bw.Write(b)
		} else {
			// Children is the last field: open the object again to add it.
			bw.Write(b[:len(b)-len("\n"+inner+"}")])
			bw.WriteString(",\n" + inner + "  \"children\": ")
			if err := hopsJSON(bw, h.Children, inner+"  "); err != nil {
				return err
			}
			bw.WriteString("\n" + inner + "}")
		}
		if i < len(hops)-1 {
			bw.WriteByte(',')
		}
		bw.WriteByte('\n')
	}
	bw.WriteString(indent + "]")
	return nil
}
