package jobenv

import (
	"strings"
	"testing"
)

func TestVarsUniqueAndDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range Vars {
		if v.Name == "" || v.Meaning == "" {
			t.Errorf("incomplete entry %+v", v)
		}
		if seen[v.Name] {
			t.Errorf("%s listed twice", v.Name)
		}
		seen[v.Name] = true
	}
	for _, name := range []string{Rank, WorldSize, LocalRank, LocalWorldSize, NodeRank, GroupRank, RoleRank,
		RoleWorldSize, NNodes, MasterAddr, MasterPort, Token, RunID, TorchElasticRunID, RestartCount,
		TorchElasticRestartCount, WorldVersion, Elastic, MinNodes, MaxNodes, Transport, GoMaxProcs,
		JoinTimeout, PeerTimeout} {
		if !seen[name] {
			t.Errorf("%s is not in Vars", name)
		}
	}
	md := Markdown()
	if strings.Count(md, "\n") != len(Vars)+2 {
		t.Errorf("table has %d lines for %d vars", strings.Count(md, "\n"), len(Vars))
	}
}
