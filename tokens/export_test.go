package tokens

// Waiting is how many Token calls of credential name are blocked on a
// refresh in flight, plus Rejected calls blocked on a validation.
func (m *Manager) Waiting(name string) int {
	return int(m.byName[name].waiting.Load())
}
