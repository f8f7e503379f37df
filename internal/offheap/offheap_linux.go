//go:build linux

package flatcache

import "golang.org/x/sys/unix"

// mapRing maps n bytes of anonymous memory outside the Go heap: the kernel
// commits its pages only as they are written, so a large CLIENT_CACHE_MB
// costs what the cache holds, not its bound, and the collector neither
// scans it nor counts it toward its next goal. MAP_NORESERVE: a bound larger
// than the machine's memory is not refused up front (what the cache holds
// then is the limit, as with memory allocated as it goes). Huge pages, where
// the kernel allows them (madvise), cut the TLB misses of reads spread over
// gigabytes.
func mapRing(n int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // advice: without it, small pages
	return b, nil
}

func unmapRing(b []byte) { _ = unix.Munmap(b) }
