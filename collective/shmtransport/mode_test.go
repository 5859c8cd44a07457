package shmtransport

import (
	"strings"
	"testing"
)

func TestModeFromEnv(t *testing.T) {
	for _, c := range []struct {
		env  string
		want Mode
	}{{"", ModeAuto}, {"auto", ModeAuto}, {"QUIC", ModeQUIC}, {" shm ", ModeShm}, {"tls", ModeAuto}, {"tcp", ModeAuto}} {
		t.Setenv(EnvTransport, c.env)
		m, err := ModeFromEnv()
		if err != nil || m != c.want {
			t.Errorf("%s=%q: %v, %v; want %v", EnvTransport, c.env, m, err, c.want)
		}
		if m.String() != c.want.String() {
			t.Errorf("String: %q", m.String())
		}
	}
	t.Setenv(EnvTransport, "udp")
	_, err := ModeFromEnv()
	if err == nil || !strings.Contains(err.Error(), EnvTransport) || !strings.Contains(err.Error(), `"udp"`) {
		t.Fatalf("bad value: %v, want an error naming the variable and the value", err)
	}
	// GORUN_SHM, when set, wins.
	t.Setenv(EnvTransport, "quic")
	for v, want := range map[string]Mode{"on": ModeAuto, "off": ModeQUIC, "require": ModeShm} {
		t.Setenv(EnvShm, v)
		if m, err := ModeFromEnv(); err != nil || m != want {
			t.Errorf("%s=%s: %v, %v; want %v", EnvShm, v, m, err, want)
		}
	}
	t.Setenv(EnvShm, "maybe")
	if _, err := ModeFromEnv(); err == nil || !strings.Contains(err.Error(), EnvShm) {
		t.Fatalf("bad GORUN_SHM: %v", err)
	}
}

func TestShmNames(t *testing.T) {
	n := shmName("job-with/odd chars", 4242, [16]byte{0xab})
	if !strings.HasPrefix(n, NamePrefix) || strings.ContainsAny(n, "/ ") {
		t.Fatalf("name %q", n)
	}
	if pid, ok := parseShmName(n); !ok || pid != 4242 {
		t.Fatalf("parse %q: %d %v", n, pid, ok)
	}
	for _, bad := range []string{
		"", "ringtrain-shm-", "other-1-00000000000000000000000000000000",
		"ringtrain-shm-job-0-00000000000000000000000000000000",  // pid 0
		"ringtrain-shm--12-00000000000000000000000000000000",    // no job
		"ringtrain-shm-job-12-0000000000000000000000000000000",  // short random part
		"ringtrain-shm-job-12-0000000000000000000000000000000g", // not hex
		"ringtrain-shm-a/b-12-00000000000000000000000000000000", // a path
		"ringtrain-shm-job-99999999999-00000000000000000000000000000000",
	} {
		if _, ok := parseShmName(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}
