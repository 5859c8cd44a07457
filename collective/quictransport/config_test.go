package quictransport

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	good := map[string]string{"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "MASTER_ADDR": "10.1.2.3",
		"MASTER_PORT": "29500", "GORUN_TOKEN": "abc", "GORUN_JOIN_TIMEOUT": "90s", "GORUN_PEER_TIMEOUT": "3s"}
	setEnv := func(t *testing.T, env map[string]string) {
		for _, k := range []string{"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "GORUN_TOKEN", "GORUN_JOIN_TIMEOUT", "GORUN_PEER_TIMEOUT"} {
			t.Setenv(k, env[k])
		}
	}
	setEnv(t, good)
	c, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Rank: 2, Size: 4, LocalRank: 0, MasterAddr: "10.1.2.3", MasterPort: 29500, Token: "abc",
		JoinTimeout: 90 * time.Second, PeerTimeout: 3 * time.Second}
	if c != want {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}

	for _, tc := range []struct {
		name, key, value, wantVar string
	}{
		{"rank not a number", "RANK", "two", "RANK"},
		{"rank out of range", "RANK", "4", "RANK"},
		{"size zero", "WORLD_SIZE", "0", "WORLD_SIZE"},
		{"size missing", "WORLD_SIZE", "", "WORLD_SIZE"},
		{"local rank negative", "LOCAL_RANK", "-1", "LOCAL_RANK"},
		{"master addr missing", "MASTER_ADDR", "", "MASTER_ADDR"},
		{"port zero", "MASTER_PORT", "0", "MASTER_PORT"},
		{"port huge", "MASTER_PORT", "65536", "MASTER_PORT"},
		{"token empty", "GORUN_TOKEN", "", "GORUN_TOKEN"},
		{"join timeout bad", "GORUN_JOIN_TIMEOUT", "90", "GORUN_JOIN_TIMEOUT"},
		{"peer timeout negative", "GORUN_PEER_TIMEOUT", "-1s", "GORUN_PEER_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range good {
				env[k] = v
			}
			env[tc.key] = tc.value
			setEnv(t, env)
			_, err := ConfigFromEnv()
			var ee *EnvError
			if !errors.As(err, &ee) || ee.Var != tc.wantVar {
				t.Fatalf("err = %v, want an EnvError for %s", err, tc.wantVar)
			}
			if tc.value != "" && !strings.Contains(err.Error(), tc.value) {
				t.Fatalf("error %q does not quote the bad value %q", err, tc.value)
			}
		})
	}

	// A single rank needs no token; LOCAL_RANK defaults to RANK.
	env := map[string]string{"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "1234"}
	setEnv(t, env)
	if c, err := ConfigFromEnv(); err != nil || c.Token != "" || c.LocalRank != 0 {
		t.Fatalf("single rank without token: %+v, %v", c, err)
	}
}
