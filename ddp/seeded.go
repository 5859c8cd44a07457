package ddp

import "github.com/ringtrain/ringtrain/models"

// seededState is implemented by layers whose behaviour depends on a random stream
// (models.Dropout): its position must travel in checkpoints for a resumed run to draw
// the same masks as an uninterrupted one.
type seededState interface {
	State() (seed, calls uint64)
	SetState(seed, calls uint64)
}

type seededLayer struct {
	name string
	s    seededState
}

func seededLayers(m models.Model) []seededLayer {
	var out []seededLayer
	for _, l := range m.Layers() {
		if s, ok := l.(seededState); ok {
			out = append(out, seededLayer{name: l.Name(), s: s})
		}
	}
	return out
}
