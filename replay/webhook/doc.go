// Package webhook posts one message to one endpoint the way Standard
// Webhooks receivers expect: signed (webhook-id, webhook-timestamp,
// webhook-signature), within a time limit, never following redirects,
// reading at most a little of the answer, and connecting only to addresses
// its Policy allows, checked when the connection is made (SSRF, DNS
// rebinding). It says what an attempt's answer means (delivered, retry,
// failed) and when a retry is due; what to send, and what to do with the
// outcome, is the caller's (package replay).
//
// It imports nothing of Hindsight's.
package webhook
