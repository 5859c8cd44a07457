package datalink

import "github.com/ringtrain/ringtrain/collective/transport"

// lazyLink is what Link returns: transport.Lazy (the link whose setup may still be running),
// which also says what carries it once set up.
type lazyLink struct {
	*transport.Lazy
	e *entry
}

func newLazyLink(peer int, e *entry) *lazyLink {
	return &lazyLink{Lazy: transport.NewLazy(peer), e: e}
}

// Kind says what carries this link once set up ("" before).
func (z *lazyLink) Kind() string {
	select {
	case <-z.e.ready:
		return z.e.kind
	default:
		return ""
	}
}
