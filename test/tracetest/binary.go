package tracetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Binary is the kubectl-svctrace binary tests run: $SVCTRACE_BIN (make test sets it to the one it
// built), or one built now into dir.
func Binary(dir string) (string, error) {
	if bin := os.Getenv("SVCTRACE_BIN"); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(dir, "kubectl-svctrace")
	build := exec.Command("go", "build", "-o", bin, "github.com/svctrace/svctrace/cmd/kubectl-svctrace")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building kubectl-svctrace: %v\n%s", err, out)
	}
	return bin, nil
}
