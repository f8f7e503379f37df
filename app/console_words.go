package app

import (
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// The console's words for numbers and times: "2 hours ago" with the exact
// time beside it for a tooltip and for machines, "try again in 15 minutes".

// relTime is a moment as a page shows it.
type relTime struct {
	At    time.Time
	ISO   string // for <time datetime>
	Exact string // "2 Jan 2006, 15:04 UTC", for the tooltip
	Ago   string // "2 hours ago", "now"
	Zero  bool   // no time known
}

// activeWithin is how recent a last use reads as "now": longer than the
// touch interval (at most a minute), within which a session in use may not
// have recorded its latest use.
const activeWithin = 2 * time.Minute

func exactTime(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") }

// relativeTime is t seen from now: "just now", "5 minutes ago", "yesterday",
// "3 days ago", or its date when older than a month.
func relativeTime(t, now time.Time) relTime {
	if t.IsZero() {
		return relTime{Zero: true, Ago: "—"}
	}
	r := relTime{At: t, ISO: rfc3339(t), Exact: exactTime(t)}
	switch d := now.Sub(t); {
	case d < time.Minute:
		r.Ago = "just now"
	case d < time.Hour:
		r.Ago = plural(int(d/time.Minute), "minute") + " ago"
	case d < 24*time.Hour:
		r.Ago = plural(int(d/time.Hour), "hour") + " ago"
	case d < 48*time.Hour:
		r.Ago = "yesterday"
	case d < 30*24*time.Hour:
		r.Ago = plural(int(d/(24*time.Hour)), "day") + " ago"
	default:
		r.Ago = "on " + t.UTC().Format("2 Jan 2006")
	}
	return r
}

// activeTime is a last use: "now" while recent, else as relativeTime.
func activeTime(t, now time.Time) relTime {
	r := relativeTime(t, now)
	if !r.Zero && now.Sub(t) < activeWithin {
		r.Ago = "now"
	}
	return r
}

// waitWords is a wait of so many seconds as people say it, rounded up:
// "30 seconds", "15 minutes", "2 hours".
func waitWords(seconds int) string {
	switch {
	case seconds < 1:
		return "a moment"
	case seconds < 60:
		return plural(seconds, "second")
	case seconds < 3600:
		return plural((seconds+59)/60, "minute")
	}
	return plural((seconds+3599)/3600, "hour")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// sentence makes an error's message a sentence: capitalized, with a stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if s[len(s)-1] != '.' {
		s += "."
	}
	return s
}
