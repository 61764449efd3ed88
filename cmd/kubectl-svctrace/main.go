// Command kubectl-svctrace is the svctrace kubectl plugin (kubectl svctrace ...), also run
// directly with sudo on a node.
package main

import (
	"os"

	"github.com/svctrace/svctrace/plugin"
)

func main() {
	os.Exit(plugin.Execute())
}
