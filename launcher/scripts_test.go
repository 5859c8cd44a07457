package launcher

import (
	"github.com/ringtrain/ringtrain/jobenv"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// The deployment scripts live in scripts/; these tests keep them parseable and consistent with
// the flags gorun has.

func TestSlurmScriptSyntax(t *testing.T) {
	const path = "../scripts/slurm/gorun.sbatch"
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		if out, err := exec.Command(bash, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", path, err, out)
		}
	} else {
		t.Log("no bash: syntax not checked")
	}
	checkFlagsExist(t, path, string(src))
	for _, want := range []string{"srun --ntasks-per-node=1", "--token-file", "umask 077", `"$@"`} {
		if !strings.Contains(string(src), want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
}

func TestKubernetesManifest(t *testing.T) {
	const path = "../scripts/k8s/gorun-job.yaml"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	if strings.Contains(src, "\t") {
		t.Errorf("%s contains a tab, which YAML forbids for indentation", path)
	}
	checkFlagsExist(t, path, src)
	// A parser, where one is installed.
	if py, err := exec.LookPath("python3"); err == nil {
		script := `import sys
try:
    import yaml
except ImportError:
    print("no yaml"); sys.exit(0)
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
svc = next(d for d in docs if d["kind"] == "Service")
job = next(d for d in docs if d["kind"] == "Job")
spec, pod = job["spec"], job["spec"]["template"]["spec"]
env = {e["name"]: e for e in pod["containers"][0]["env"]}
assert svc["spec"]["clusterIP"] == "None", "Service must be headless"
assert spec["completionMode"] == "Indexed", "Job must be Indexed"
assert spec["completions"] == spec["parallelism"] == int(env["NNODES"]["value"]), "completions, parallelism, NNODES differ"
assert pod["subdomain"] == svc["metadata"]["name"], "subdomain must name the Service"
assert svc["spec"]["selector"]["job-name"] == job["metadata"]["name"], "Service must select the Job's pods"
assert env["MASTER_ADDR"]["value"] == job["metadata"]["name"] + "-0." + svc["metadata"]["name"], "MASTER_ADDR must be pod 0"
assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
rules = spec["podFailurePolicy"]["rules"]
assert any(r["action"] == "Ignore" and r.get("onExitCodes", {}).get("values") == [75] and r["onExitCodes"]["containerName"] == pod["containers"][0]["name"] for r in rules), "exit 75 (preempted) must not fail the Job"
assert pod["restartPolicy"] == "Never", "podFailurePolicy needs restartPolicy Never"
ports = {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]}
assert ports == {(int(env["MASTER_PORT"]["value"]), "TCP"), (int(env["MASTER_PORT"]["value"]), "UDP")}, ports
print("ok")
`
		out, err := exec.Command(py, "-c", script, path).CombinedOutput()
		switch strings.TrimSpace(string(out)) {
		case "ok":
		case "no yaml":
			t.Log("python3 has no yaml module: only the minimal checks ran")
		default:
			t.Errorf("%s: %v\n%s", path, err, out)
		}
	} else {
		t.Log("no python3: only the minimal checks ran")
	}
	for _, want := range []string{"kind: Service", "clusterIP: None", "kind: Job", "completionMode: Indexed", "subdomain: ringtrain", "secretName:"} {
		if !strings.Contains(src, want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
}

// checkFlagsExist makes sure every --flag a script passes to gorun is one gorun has.
func checkFlagsExist(t *testing.T, path, src string) {
	t.Helper()
	known := map[string]bool{}
	for _, d := range flagDefs {
		known[d.name], known[d.alias] = true, true
	}
	// gorun's flags are the ones on lines after "gorun" up to TARGET; the scripts put each on
	// its own line, so look at lines that start with a gorun flag-like token.
	re := regexp.MustCompile(`(?m)^\s*(?:- )?"?--([a-z][a-z-]*)`)
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		name := m[1]
		if name == "epochs" || name == "ntasks-per-node" || name == "kill-on-bad-exit" || name == "from-literal" {
			continue // the program's or other tools' flags
		}
		if !known[name] {
			t.Errorf("%s passes --%s, which gorun does not have", path, name)
		}
	}
}

// TestUsageDocListsFlagsAndEnv keeps launcher/USAGE.md in step with the flags.
func TestUsageDocListsFlagsAndEnv(t *testing.T) {
	b, err := os.ReadFile("USAGE.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, d := range flagDefs {
		if !strings.Contains(doc, "`--"+d.name) {
			t.Errorf("USAGE.md does not document --%s", d.name)
		}
	}
	if !strings.Contains(doc, jobenv.Markdown()) {
		t.Errorf("USAGE.md's environment table differs from jobenv.Markdown(); paste this between the jobenv markers:\n%s", jobenv.Markdown())
	}
}

// TestRankEnvIsTheContract: a rank gets every variable of package jobenv that gorun sets.
func TestRankEnvIsTheContract(t *testing.T) {
	c := (&Config{Target: "x", NNodes: 2, NodeRank: 1, NProc: 2, MasterAddr: "h0", Token: "t"}).withDefaults()
	g := &localGroup{cfg: &c, runID: "r", gomaxprocs: "1", world: world{nodeRank: 1, nnodes: 2, masterAddr: "h0"}}
	env := map[string]string{}
	for _, kv := range g.rankEnv(1, 3) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for _, v := range jobenv.Vars {
		if _, ok := env[v.Name]; ok != v.SetByGorun {
			t.Errorf("%s: set %v, jobenv says set by gorun %v", v.Name, ok, v.SetByGorun)
		}
	}
	if env[jobenv.Rank] != "3" || env[jobenv.RestartCount] != "3" || env[jobenv.TorchElasticRestartCount] != "3" || env[jobenv.GroupRank] != "1" {
		t.Errorf("env %v", env)
	}
}
