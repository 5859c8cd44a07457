package pipeline

import (
	"fmt"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/timeline"
)

// stageTrace records a stage's actions into its group's timeline (collective.Group.Timeline:
// GORUN_TIMELINE under gorun) on the row "pipeline stage <s>": per action, the receive of
// its input ("recv activation m", "recv gradient m"), its computation ("forward m",
// "backward m"), and the optimizer step; each sender goroutine has its own row ("pipeline
// send to rank r") with one "send activation m" or "send gradient m" per message, from
// the moment it takes the message until the transport has it. The stage's gradient
// AllReduce is on the collective row. Names are built once, not per step; without a
// timeline every hook is a nil check.
type stageTrace struct {
	r     *timeline.Recorder
	tid   int
	names [2][3][]string // [Forward|Backward][compute, recv, send][micro-batch]
}

const (
	nameCompute = iota
	nameRecv
	nameSend
)

func (t *stageTrace) init(r *timeline.Recorder, stage, micro int) {
	if r == nil {
		return
	}
	t.r, t.tid = r, r.Thread(fmt.Sprintf("pipeline stage %d", stage))
	for m := range micro {
		for k, what := range []string{"activation", "gradient"} {
			t.names[k][nameCompute] = append(t.names[k][nameCompute], fmt.Sprintf("%s %d", [2]string{"forward", "backward"}[k], m))
			t.names[k][nameRecv] = append(t.names[k][nameRecv], fmt.Sprintf("recv %s %d", what, m))
			t.names[k][nameSend] = append(t.names[k][nameSend], fmt.Sprintf("send %s %d", what, m))
		}
	}
}

// span records what (nameCompute or nameRecv) of action a on the stage's row.
func (t *stageTrace) span(a Action, what int, start int64) {
	if t.r == nil {
		return
	}
	t.r.Complete(t.tid, t.names[a.Kind][what][a.Micro], "pipeline", start, t.r.Now(), timeline.Int("micro", int64(a.Micro)))
}

// senderRow is the tid of the row of the sender to group rank peer of g (0 without a
// timeline). The row is named after the world rank: that is the process row's number.
func (t *stageTrace) senderRow(g *collective.Group, peer int) int {
	if t.r == nil {
		return 0
	}
	return t.r.Thread(fmt.Sprintf("pipeline send to rank %d", g.Ranks()[peer]))
}

// sent records a message of micro-batch m in direction k, taken at start, on row tid.
func (t *stageTrace) sent(tid int, k ActionKind, m int, start int64, bytes int) {
	if t.r == nil {
		return
	}
	t.r.Complete(tid, t.names[k][nameSend][m], "pipeline", start, t.r.Now(), timeline.Int("micro", int64(m)), timeline.Int("bytes", int64(bytes)))
}
