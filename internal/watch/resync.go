package watch

// Resync makes every stream catch its watchers up from history, as when a
// member restored its leader's snapshot: the state moved on under the
// watchers without events being published, so each one is served what it
// missed from the restored history, or canceled as compacted if that
// history no longer holds its next revision (as etcd does). It never
// blocks.
func (h *Hub) Resync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.kick()
	}
}
