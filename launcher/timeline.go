package launcher

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ringtrain/ringtrain/timeline"
)

// prepareTimeline makes --timeline absolute (ranks may run in another directory, Config.Dir)
// and removes the rank files an earlier job left for this node's ranks, so that the merge at
// the end takes only this job's. On nodes other than node 0 the merged file gets the node's
// number (trace.node1.json): several nodes writing one FILE on a shared file system would
// overwrite each other.
func (r *runner) prepareTimeline() error {
	abs, err := filepath.Abs(r.cfg.Timeline)
	if err != nil {
		return usagef("--timeline %s: %v", r.cfg.Timeline, err)
	}
	if st, err := os.Stat(filepath.Dir(abs)); err != nil || !st.IsDir() {
		return usagef("--timeline %s: directory %s does not exist", r.cfg.Timeline, filepath.Dir(abs))
	}
	r.cfg.Timeline = abs
	for _, p := range r.timelineRankFiles() {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return jobErrorf("--timeline: removing the stale %s: %v", p, err)
		}
	}
	return nil
}

// timelineRankFiles are the files this node's ranks write (in the latest world: an elastic
// job's node may have been renumbered).
func (r *runner) timelineRankFiles() []string {
	node := r.cfg.NodeRank
	if r.group != nil {
		node = r.group.world.nodeRank
	}
	out := make([]string, r.cfg.NProc)
	for l := range out {
		out[l] = timeline.RankPath(r.cfg.Timeline, node*r.cfg.NProc+l)
	}
	return out
}

// mergeTimeline merges the rank files this node's ranks wrote (whether the job succeeded or
// not: a failed job's timeline is the one worth reading) and says where the result is.
func (r *runner) mergeTimeline() {
	var have []string
	for _, p := range r.timelineRankFiles() {
		if _, err := os.Stat(p); err == nil {
			have = append(have, p)
		}
	}
	if len(have) == 0 {
		r.say("--timeline: no rank wrote a timeline (a program records one through collective.InitFromEnv)")
		return
	}
	out := r.cfg.Timeline
	if node := r.group.world.nodeRank; node != 0 {
		ext := filepath.Ext(out)
		out = out[:len(out)-len(ext)] + ".node" + strconv.Itoa(node) + ext
	}
	if err := timeline.Merge(out, have); err != nil {
		r.say("warning: --timeline: %v", err)
		return
	}
	r.say("timeline of %d rank(s) written to %s (open it in https://ui.perfetto.dev or chrome://tracing)", len(have), out)
}
