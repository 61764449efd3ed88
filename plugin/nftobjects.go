package plugin

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/dataplane/nftnl"
)

// newCmdNftObjects builds the hidden command a remote scoped read runs in the svctrace agent's
// pod on a node: it reads the kube-proxy objects its argument asks for over netlink and prints
// them as nft does (nftjson.ServeObjects). The argument is validated as untrusted input.
func newCmdNftObjects(streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:    nftjson.ObjectsCommand + " REQUEST",
		Short:  "Read nftables objects over netlink for a remote trace (run by svctrace in the agent's pod)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := nftnl.Open(nil)
			if err != nil {
				return &ExitError{Code: ExitRead, Err: err}
			}
			defer r.Close()
			out, err := nftjson.ServeObjects(cmd.Context(), r, []byte(args[0]))
			if err != nil {
				return &ExitError{Code: ExitRead, Err: err}
			}
			_, err = streams.Out.Write(out)
			return err
		},
	}
}
