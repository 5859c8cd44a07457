package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The launcher package tests gorun in depth; these tests check the command itself: that it
// builds, and that its exit status follows launcher.Main.

var gorunBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gorun-cmd-test-")
	if err != nil {
		panic(err)
	}
	gorunBin = filepath.Join(dir, "gorun")
	if out, err := exec.Command("go", "build", "-o", gorunBin, ".").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic("building gorun: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(gorunBin, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.go")
	os.WriteFile(ok, []byte("package main\n\nimport \"os\"\n\nfunc main() { println(\"rank\", os.Getenv(\"RANK\")) }\n"), 0o644)
	bad := filepath.Join(dir, "bad", "bad.go")
	os.MkdirAll(filepath.Dir(bad), 0o755)
	os.WriteFile(bad, []byte("package main\n\nimport \"os\"\n\nfunc main() { os.Exit(3) }\n"), 0o644)

	cases := []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{[]string{"--help"}, 0, "usage: gorun [flags] TARGET [args...]"},
		{[]string{"--nproc", "2"}, 2, "missing TARGET"},
		{[]string{"--nproc=nope", ok}, 2, "--nproc"},
		{[]string{"--standalone", "--nproc", "2", ok}, 0, "[1] rank 1"},
		{[]string{"--standalone", "--nproc", "2", bad}, 1, "exit code 3"},
	}
	for _, tc := range cases {
		code, stdout, stderr := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
			t.Errorf("gorun %q: exit %d, output:\n%s%s\nwant exit %d and %q", tc.args, code, stdout, stderr, tc.code, tc.want)
		}
	}
}
