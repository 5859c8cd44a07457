package launcher

import (
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func envMap(kv ...string) LookupEnv {
	m := map[string]string{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		m[k] = v
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// TestParseArgsPrecedence checks flag > torchrun environment > Slurm > default for each
// setting that has all of them.
func TestParseArgsPrecedence(t *testing.T) {
	slurm := []string{"SLURM_NNODES=4", "SLURM_NODEID=2", "SLURM_JOB_NODELIST=node[01-04,07],gpu3"}
	cases := []struct {
		name  string
		args  []string
		env   []string
		check func(c *Config) string
	}{
		{"defaults", []string{"prog"}, nil, func(c *Config) string {
			return sp(c.NProc, c.NNodes, c.NodeRank, c.MasterAddr, c.MasterPort, c.MaxRestarts, c.Grace, c.Token)
		}},
		{"slurm", []string{"--token", "t", "prog"}, slurm, func(c *Config) string {
			return sp(c.NNodes, c.NodeRank, c.MasterAddr)
		}},
		{"torchrun env beats slurm", []string{"--token", "t", "prog"},
			append([]string{"NNODES=3", "NODE_RANK=1", "MASTER_ADDR=head", "MASTER_PORT=1234"}, slurm...),
			func(c *Config) string { return sp(c.NNodes, c.NodeRank, c.MasterAddr, c.MasterPort) }},
		{"PET beats plain", []string{"--token", "t", "prog"},
			[]string{"PET_NNODES=2:2", "NNODES=3", "PET_NODE_RANK=1", "NODE_RANK=2", "PET_MASTER_ADDR=pet", "MASTER_ADDR=plain",
				"PET_MASTER_PORT=77", "MASTER_PORT=88", "PET_NPROC_PER_NODE=8", "PET_MAX_RESTARTS=3"},
			func(c *Config) string {
				return sp(c.NNodes, c.NodeRank, c.MasterAddr, c.MasterPort, c.NProc, c.MaxRestarts)
			}},
		{"flags beat everything", []string{"--nnodes", "5", "--node-rank", "4", "--master-addr", "flag", "--master-port", "99",
			"--nproc-per-node", "2", "--max-restarts", "1", "--token", "t", "prog"},
			append([]string{"PET_NNODES=2", "NODE_RANK=1", "MASTER_ADDR=env", "MASTER_PORT=1", "PET_NPROC_PER_NODE=8"}, slurm...),
			func(c *Config) string {
				return sp(c.NNodes, c.NodeRank, c.MasterAddr, c.MasterPort, c.NProc, c.MaxRestarts)
			}},
		{"operator RANK/WORLD_SIZE as node rank/count", []string{"--token", "t", "prog"},
			[]string{"WORLD_SIZE=3", "RANK=2", "MASTER_ADDR=pod-0"},
			func(c *Config) string { return sp(c.NNodes, c.NodeRank, c.MasterAddr) }},
		{"RANK/WORLD_SIZE ignored when NNODES is set", []string{"--token", "t", "prog"},
			[]string{"WORLD_SIZE=8", "RANK=5", "NNODES=2", "MASTER_ADDR=h"},
			func(c *Config) string { return sp(c.NNodes, c.NodeRank) }},
		{"token sources", []string{"prog"}, []string{"GORUN_TOKEN= envtok \n"},
			func(c *Config) string { return c.Token }},
		{"grace 0 means kill now", []string{"--grace", "0", "prog"}, nil,
			func(c *Config) string { return sp(c.Grace < 0) }},
		{"standalone clears env addresses", []string{"--standalone", "prog"}, []string{"MASTER_ADDR=x", "MASTER_PORT=5", "NNODES=1"},
			func(c *Config) string { return sp(c.Standalone, c.MasterAddr, c.MasterPort, c.NNodes) }},
		{"transport and run id", []string{"--transport", "shm", "prog"}, []string{"GORUN_TRANSPORT=quic", "GORUN_RUN_ID=r1"},
			func(c *Config) string { return c.Transport + " " + c.RunID }},
		{"transport from env", []string{"prog"}, []string{"GORUN_TRANSPORT= QUIC "},
			func(c *Config) string { return c.Transport }},
		{"shm, iface", []string{"--transport", "tcp", "--shm", "off", "--iface", "eth1", "prog"}, []string{"GORUN_SHM=on"},
			func(c *Config) string { return sp(c.Transport, c.Shm, c.Iface) }},
		{"old shm means require", []string{"--transport", "shm", "prog"}, nil,
			func(c *Config) string { return sp(c.Transport, c.Shm) }},
		{"shm and iface from env", []string{"prog"}, []string{"GORUN_SHM=off", "GORUN_SOCKET_IFNAME=10.0.0.2"},
			func(c *Config) string { return sp(c.Shm, c.Iface) }},
		{"-- after the target is dropped", []string{"prog", "--", "--min", "4"}, nil,
			func(c *Config) string { return strings.Join(c.Args, " ") }},
		{"-- -- passes one", []string{"prog", "--", "--", "x"}, nil,
			func(c *Config) string { return strings.Join(c.Args, " ") }},
	}
	want := []string{
		sp(1, 1, 0, "", DefaultMasterPort, 0, DefaultGrace, ""),
		"4 2 node01",
		"3 1 head 1234",
		"2 1 pet 77 8 3",
		"5 4 flag 99 2 1",
		"3 2 pod-0",
		"2 0",
		"envtok",
		"true",
		"true  0 1",
		"shm r1",
		"quic",
		"tcp off eth1",
		"shm require",
		"off 10.0.0.2",
		"--min 4",
		"-- x",
	}
	for i, tc := range cases {
		c, err := ParseArgs(tc.args, envMap(tc.env...))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := tc.check(c); got != want[i] {
			t.Errorf("%s: got %q, want %q", tc.name, got, want[i])
		}
	}
}

// TestParseArgsStopsAtTarget: flags after TARGET belong to the program, even gorun's own.
func TestParseArgsStopsAtTarget(t *testing.T) {
	c, err := ParseArgs([]string{"--nproc=2", "train.go", "--nproc", "5", "-h", "--", "x"}, envMap())
	if err != nil {
		t.Fatal(err)
	}
	if c.NProc != 2 || c.Target != "train.go" || !reflect.DeepEqual(c.Args, []string{"--nproc", "5", "-h", "--", "x"}) {
		t.Errorf("got nproc %d target %q args %q", c.NProc, c.Target, c.Args)
	}
	c, err = ParseArgs([]string{"--", "-weird-name"}, envMap())
	if err != nil || c.Target != "-weird-name" {
		t.Errorf("after --: %v %+v", err, c)
	}
	if _, err := ParseArgs([]string{"--help"}, envMap()); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help gave %v", err)
	}
}

// TestParseArgsErrors: every bad input is a *UsageError that names the flag or variable.
func TestParseArgsErrors(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{}, nil, "missing TARGET"},
		{[]string{"--nproc", "-1", "p"}, nil, "--nproc must be at least 1"},
		{[]string{"--nnodes", "0", "p"}, nil, "--nnodes must be at least 1"},
		{[]string{"--max-restarts", "-2", "p"}, nil, "--max-restarts must not be negative"},
		{[]string{"--threads-per-rank", "-2", "p"}, nil, "--threads-per-rank must not be negative"},
		{[]string{"--grace", "-1s", "p"}, nil, "--grace must not be negative"},
		{[]string{"--join-timeout", "0s", "p"}, nil, "--join-timeout must be positive"},
		{[]string{"--standalone=maybe", "p"}, nil, "--standalone"},
		{[]string{"--token", "a", "--token-file", "f", "p"}, nil, "either --token or --token-file"},
		{[]string{"--token", "  ", "p"}, nil, "--token is empty"},
		{[]string{"--standalone", "--nnodes", "2", "p"}, nil, "drop --nnodes"},
		{[]string{"p"}, []string{"NNODES=x"}, "NNODES=\"x\" is not an integer"},
		{[]string{"p"}, []string{"SLURM_NODEID=first"}, "SLURM_NODEID"},
		{[]string{"p"}, []string{"NNODES=2", "MASTER_ADDR=h"}, "needs a token"},
		{[]string{"p"}, []string{"GORUN_TRANSPORT=udp"}, "GORUN_TRANSPORT=\"udp\""},
		{[]string{"p"}, []string{"GORUN_SHM=maybe"}, "GORUN_SHM=\"maybe\""},
		{[]string{"--token", "t", "p"}, []string{"NNODES=2", "NODE_RANK=2", "MASTER_ADDR=h"}, "--node-rank must be in [0, 2)"},
	}
	for _, tc := range cases {
		_, err := ParseArgs(tc.args, envMap(tc.env...))
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseArgs(%q, %q) = %v; want a UsageError with %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestUsageListsEveryFlag(t *testing.T) {
	var b strings.Builder
	Usage(&b)
	for _, d := range flagDefs {
		if !strings.Contains(b.String(), d.synopsis()) {
			t.Errorf("--help lacks %s", d.synopsis())
		}
	}
}

func ExampleParseArgs() {
	env := envMap("SLURM_NNODES=2", "SLURM_NODEID=1", "SLURM_JOB_NODELIST=gpu[07-08]")
	c, err := ParseArgs([]string{"--nproc", "4", "--token", "s3cret", "train.go", "--epochs", "3"}, env)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.NNodes, c.NodeRank, c.NProc, c.MasterAddr, c.Target, c.Args)
	// Output: 2 1 4 gpu07 train.go [--epochs 3]
}

// sp joins values with single spaces, strings included.
func sp(v ...any) string { return strings.TrimSuffix(fmt.Sprintln(v...), "\n") }
