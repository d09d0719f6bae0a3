package api

// SetHashHook makes every registration's password hash call f while it
// holds its hash slot, so a test can keep the slots busy for as long as it
// needs. Set it before requests start.
func SetHashHook(s *Server, f func()) { s.passwords.onHash = f }

// PooledStreams is how many streams the writer pool serves (-1: no pool).
func PooledStreams(s *Server) int {
	if s.pool == nil {
		return -1
	}
	return s.pool.Len()
}

// TakenPolls is how many long-pollers' connections the poll fast path
// serves (-1: it is off).
func TakenPolls(s *Server) int {
	if s.polls == nil {
		return -1
	}
	return s.polls.len()
}
