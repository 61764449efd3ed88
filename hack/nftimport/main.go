// Command nftimport turns `nft -j list ruleset` output (stdin) into what `nft -j -f` loads back
// (stdout), for loading a recorded node into a network namespace (hack/bench-nft.sh).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/svctrace/svctrace/dataplane/nftjson"
)

func main() {
	in, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<30))
	if err == nil {
		in, err = nftjson.Importable(in)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nftimport:", err)
		os.Exit(1)
	}
	os.Stdout.Write(in)
}
