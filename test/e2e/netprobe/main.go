// Command netprobe is the e2e harness's pod and client program.
//
//	netprobe serve NAME PORT[/udp] ...   answer every TCP connection or UDP datagram with "NAME CLIENT-IP\n"
//	netprobe probe [flags] ADDR:PORT     open connections and print how many each backend answered, as JSON
//	netprobe relay ADDR:PORT             copy stdin to one TCP connection and the connection to stdout
//	netprobe stream [flags] ADDR:PORT    keep one flow open (a UDP source port, or a TCP connection),
//	                                     send every -interval and print each answer with its time
//	netprobe ipvs-services               list the IPVS virtual servers over netlink and print how many
//
// It runs inside the harness's network namespaces; it never talks to anything else. relay is
// QEMU's guestfwd command for the IPVS VM: QEMU starts one per guest connection, so each of the
// guest's connections to the API server is a connection of its own.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: netprobe serve NAME PORT[/udp]... | netprobe probe [flags] ADDR:PORT | netprobe relay ADDR:PORT")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2], os.Args[3:])
	case "probe":
		probe(os.Args[2:])
	case "stream":
		stream(os.Args[2:])
	case "ipvs-services":
		if err := ipvsServices(); err != nil {
			fmt.Fprintln(os.Stderr, "netprobe ipvs-services:", err)
			os.Exit(1)
		}
	case "relay":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: netprobe relay ADDR:PORT")
			os.Exit(2)
		}
		if err := relay(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "netprobe relay:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "netprobe: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func serve(name string, ports []string) {
	var wg sync.WaitGroup
	for _, p := range ports {
		port, proto, _ := strings.Cut(p, "/")
		wg.Add(1)
		if proto == "udp" {
			go func() {
				defer wg.Done()
				c, err := net.ListenPacket("udp", ":"+port)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				buf := make([]byte, 1500)
				for {
					_, from, err := c.ReadFrom(buf)
					if err != nil {
						continue
					}
					host, _, _ := net.SplitHostPort(from.String())
					_, _ = c.WriteTo([]byte(name+" "+host+"\n"), from)
				}
			}()
			continue
		}
		go func() {
			defer wg.Done()
			l, err := net.Listen("tcp", ":"+port)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			for {
				c, err := l.Accept()
				if err != nil {
					continue
				}
				go handle(name, c)
			}
		}()
	}
	wg.Wait()
}

// handle answers each line the client sends (keep-alive clients send many) and, for clients that
// send nothing, one answer at once.
func handle(name string, c net.Conn) {
	defer c.Close()
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	answer := []byte(name + " " + host + "\n")
	if _, err := c.Write(answer); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

// Result is what probe prints.
type Result struct {
	// Backends counts answers per "NAME CLIENT-IP".
	Backends map[string]int `json:"backends"`
	// Failures counts connections that got no answer, by error text.
	Failures map[string]int `json:"failures"`
}

func probe(args []string) {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	n := fs.Int("n", 100, "connections to open")
	udp := fs.Bool("udp", false, "use UDP datagrams instead of TCP connections")
	requests := fs.Int("requests", 1, "requests sent over each TCP connection (keep-alive)")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout per connection")
	src := fs.String("src", "", "local address to send from")
	interval := fs.Duration("interval", 0, "pause between connections")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "probe needs one ADDR:PORT")
		os.Exit(2)
	}
	target := fs.Arg(0)
	res := Result{Backends: map[string]int{}, Failures: map[string]int{}}
	for i := 0; i < *n; i++ {
		d := net.Dialer{Timeout: *timeout}
		if *src != "" {
			if *udp {
				d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(*src)}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(*src)}
			}
		}
		answers, err := once(d, target, *udp, *requests, *timeout)
		for _, a := range answers {
			res.Backends[a]++
		}
		if err != nil {
			msg := err.Error()
			if i := strings.LastIndex(msg, ": "); i >= 0 {
				msg = msg[i+2:]
			}
			res.Failures[msg]++
		}
		if *interval > 0 {
			time.Sleep(*interval)
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func once(d net.Dialer, target string, udp bool, requests int, timeout time.Duration) ([]string, error) {
	network := "tcp"
	if udp {
		network = "udp"
	}
	c, err := d.Dial(network, target)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout + time.Duration(requests)*10*time.Millisecond))
	r := bufio.NewReader(c)
	var answers []string
	if udp {
		if _, err := c.Write([]byte("hello\n")); err != nil {
			return nil, err
		}
	}
	for i := 0; i < requests; i++ {
		if i > 0 {
			if _, err := c.Write([]byte("again\n")); err != nil {
				return answers, err
			}
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return answers, err
		}
		answers = append(answers, strings.TrimSpace(line))
	}
	return answers, nil
}

// relay joins stdin and stdout to one TCP connection to addr until either side closes.
func relay(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(c, os.Stdin)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- err
	}()
	go func() {
		_, err := io.Copy(os.Stdout, c)
		done <- err
	}()
	// The guest closing its side ends stdin; the server closing ends the copy to stdout: either
	// way the connection is over once the server side is done.
	err = <-done
	if err == nil {
		err = <-done
	}
	return err
}

// stream keeps one flow to addr alive the way a DNS or statsd client (UDP: one source port) or
// an HTTP/2 client (TCP: one connection) does, sending a line every interval, and prints
// "UNIX-NANOS ANSWER" for every answer. Send errors (a port unreachable after the backend went
// away) are ignored: the client keeps sending, as real ones do.
func stream(args []string) {
	fs := flag.NewFlagSet("stream", flag.ExitOnError)
	udp := fs.Bool("udp", false, "UDP datagrams from one source port instead of one TCP connection")
	sport := fs.Int("sport", 0, "UDP source port (0: any, fixed for the flow's life)")
	interval := fs.Duration("interval", 100*time.Millisecond, "pause between sends")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: netprobe stream [-udp] [-sport N] [-interval D] ADDR:PORT")
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	report := func(answer string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "%d %s\n", time.Now().UnixNano(), strings.TrimSpace(answer))
		_ = out.Flush()
	}
	if *udp {
		dst, err := net.ResolveUDPAddr("udp", fs.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{Port: *sport})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			buf := make([]byte, 1500)
			for {
				n, _, err := c.ReadFrom(buf)
				if err == nil {
					report(string(buf[:n]))
				}
			}
		}()
		for {
			_, _ = c.WriteTo([]byte("ping\n"), dst)
			time.Sleep(*interval)
		}
	}
	c, err := net.DialTimeout("tcp", fs.Arg(0), 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				fmt.Fprintln(os.Stderr, "connection ended:", err)
				os.Exit(1)
			}
			report(line)
		}
	}()
	for {
		if _, err := c.Write([]byte("ping\n")); err != nil {
			fmt.Fprintln(os.Stderr, "connection ended:", err)
			os.Exit(1)
		}
		time.Sleep(*interval)
	}
}
