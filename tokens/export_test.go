package tokens

// Waiting is how many Token and Rejected calls of credential name are
// blocked on a refresh or a validation in flight.
func (m *Manager) Waiting(name string) int {
	return int(m.byName[name].waiting.Load())
}
