package collective

import "github.com/ringtrain/ringtrain/collective/transport"

// Transport returns the transport the group runs on (for code that needs the lower-level
// API, such as a benchmark's raw exchange over the same links).
func (g *Group) Transport() transport.Transport { return g.t }

// LinkKinds says, for every world rank this rank has links to, what carries them ("shm",
// "tls", "tcp", "quic"...), when the transport can tell (InitFromEnv's can); nil otherwise.
func (g *Group) LinkKinds() map[int]string {
	if k, ok := g.t.(interface{ Kinds() map[int]string }); ok {
		return k.Kinds()
	}
	return nil
}
