//go:build linux

package offheap

import "golang.org/x/sys/unix"

// Map maps n bytes of zeroed anonymous memory outside the Go heap. The
// kernel commits its pages only as they are written, so a large bound costs
// what is held, not the bound, and the collector neither scans it nor counts
// it toward its next goal. MAP_NORESERVE: a bound larger than the machine's
// memory is not refused up front (what is held then is the limit, as with
// memory allocated as it goes). Huge pages, where the kernel allows them
// (madvise), cut the TLB misses of lookups spread over gigabytes: one random
// read in a table on 4 KiB pages is about a TLB miss, and in a virtual
// machine a TLB miss walks two page tables.
func Map(n int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // advice: without it, small pages
	return b, nil
}

// Unmap returns what Map mapped. Nothing may use b afterwards.
func Unmap(b []byte) { _ = unix.Munmap(b) }
