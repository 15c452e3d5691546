// Command moat is the edge SMTP gateway: `moat serve` runs it, the other
// commands validate configuration and inspect state. This package is the
// composition root: it loads the configuration and wires the parts
// (gateway, policy, rules, relay, mailbox); none of them knows the others'
// construction.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// defaultGOGC is the garbage collector's target when $GOGC is not set.
// A gateway's heap is small (tens of MiB) and churns fast, so collecting
// four times less often buys throughput and CPU for a few tens of MiB of
// memory (figures: bench/RESULTS.md, "Go runtime settings").
const defaultGOGC = 400

// defaultProcs is the number of Ps (Go's scheduler slots) moat runs with
// on cpus CPUs when $GOMAXPROCS is not set: at least minProcs, and two
// more than the CPUs.
//
// moat blocks in system calls by design: the spool's group commit waits
// in fdatasync, Maildir delivery in fsync, and a loopback or LAN write
// does the receiver's TCP work before it returns. A goroutine coming back
// from such a call needs a free P; if there is none, it waits in the
// global run queue behind the sessions, and the group commit's waiters
// wait with it. While it is in the call, sysmon takes its P away (a
// thread switch, which costs more in a VM) as soon as other goroutines
// wait. Spare Ps make both rare. What they need depends on how many
// goroutines block at once, not on the number of CPUs, hence a floor
// (figures: bench/RESULTS.md, "Go runtime settings").
//
// Setting it also stops Go from following later changes of a cgroup CPU
// limit.
func defaultProcs(cpus int) int {
	return max(cpus+2, minProcs)
}

const minProcs = 8

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(defaultProcs(runtime.GOMAXPROCS(0)))
	}
	root := rootCommand()
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "moat:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "moat",
		Short:         "moat is an edge SMTP gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCommand(), checkConfigCommand(), versionCommand(),
		queueCommand(), userCommand(), dkimCommand(), rulesCommand(), quarantineCommand())
	root.AddCommand(learnCommand(), configCommand(), mtaSTSCommand())
	root.AddCommand(reportCommand("dmarc"), reportCommand("tlsrpt"))
	return root
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" && len(s.Value) >= 12 {
						v = "dev-" + s.Value[:12]
					}
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "moat", v)
		},
	}
}

func checkConfigCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config FILE",
		Short: "Run every check serve makes before it binds (files opened and parsed as this user) and print each error with its key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The checks serve makes before it binds (loadChecked).
			cfg, err := loadChecked(args[0])
			if cfg != nil {
				for _, w := range cfg.Warnings() {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
				}
			}
			if err != nil {
				for _, l := range errorLines(err) {
					fmt.Fprintln(cmd.ErrOrStderr(), l)
				}
				return exitError{1}
			}
			fmt.Fprintln(cmd.OutOrStdout(), args[0]+": ok")
			return nil
		},
	}
}
