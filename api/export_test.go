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
