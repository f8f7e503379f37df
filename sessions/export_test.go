package sessions

import "time"

// WritePlainTouch writes a touch of a session as the queue's writer writes
// one found plain (its use known recorded, its hash outliving its new end),
// when the test says: so that it lands after a revocation, which in service
// only a race of a few milliseconds makes it do.
func (s *Store) WritePlainTouch(uid, sid, ip string, now time.Time) {
	s.write([]touchReq{{uid: uid, sid: sid, ip: ip, now: now, ends: now.Add(s.o.IdleTimeout).UnixMilli(), plain: true}})
}
