package app

import (
	"slices"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/audit"
)

// eventJSON is an Event (app/openapi.json, schema Event).
type eventJSON struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	At        string `json:"at"`
	UserID    string `json:"user_id"`
	ActorID   string `json:"actor_id"`
	SessionID string `json:"session_id"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Detail    string `json:"detail"`
}

func toEventsJSON(evs []audit.Event, next string) fiber.Map {
	out := make([]eventJSON, len(evs))
	for i, e := range evs {
		out[i] = eventJSON{ID: e.ID, Type: e.Type, At: rfc3339(e.At), UserID: e.UserID, ActorID: e.ActorID,
			SessionID: e.SessionID, IP: e.IP, UserAgent: e.UserAgent, Detail: e.Detail}
	}
	return fiber.Map{"events": out, "next_cursor": next}
}

// pageLimit reads ?limit=, 1 to 500, default 50.
func pageLimit(c *fiber.Ctx) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		return 0, invalid("limit: must be a whole number from 1 to 500")
	}
	return n, nil
}

// myEvents is my security history, newest first: "a new sign-in from …".
func (h *handlers) myEvents(c *fiber.Ctx) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	evs, next, err := h.Audit.List(c.UserContext(), audit.Filter{UserID: callerOf(c).UserID, Limit: limit, Cursor: c.Query("cursor")})
	if err != nil {
		return err
	}
	return c.JSON(toEventsJSON(evs, next))
}

// adminEvents is everyone's history, newest first, by user and type. One
// user's comes from their own history (written with each change) and refusal
// records; everyone's from the cross-user feed and the refusal feed
// (audit.Log.List merges them).
func (h *handlers) adminEvents(c *fiber.Ctx) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	f := audit.Filter{Type: c.Query("type"), Limit: limit, Cursor: c.Query("cursor"), UserID: c.Query("user_id")}
	if f.Type != "" && !slices.Contains(audit.Types, f.Type) {
		return invalid("type: must be one of the event types, such as login.failed")
	}
	if f.UserID != "" && !validID(f.UserID) {
		return invalid("user_id: must be a user id")
	}
	evs, next, err := h.Audit.List(c.UserContext(), f)
	if err != nil {
		return err
	}
	return c.JSON(toEventsJSON(evs, next))
}

// deleteUser deletes an account (admin.Admin.Delete).
func (h *handlers) deleteUser(c *fiber.Ctx) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	n, err := h.admin().Delete(c.UserContext(), id, h.actor(c))
	if err != nil {
		return err
	}
	h.Metrics.Revoked("delete", n)
	return c.SendStatus(fiber.StatusNoContent)
}
