package redisx

// IsOOM reports whether Redis refused a command (or a script's write) for
// want of memory: at maxmemory with noeviction, Redis refuses writes that
// may grow its memory and still serves reads and deletions.
func IsOOM(err error) bool { return isOOM(err) }
