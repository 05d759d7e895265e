package schema_test

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/schema"
)

// TestFiltersMatch: a follow keeps the events its filters' SQL would, on
// the event's parsed dimensions: domains in any case, a recipient among
// several, every filter at once.
func TestFiltersMatch(t *testing.T) {
	var p schema.Parser
	parse := func(raw string) schema.Event {
		ev, err := p.Parse([]byte(raw))
		require.NoError(t, err)
		return ev
	}
	sent := parse(`{"eventId":"e1","type":"send.email.sent","service":"send","createdAt":1,"data":{"messageId":"m1","from":"A <a@Do.Dev>","to":["x@Gmail.com","Y <y@yahoo.com>"],"subject":"s"}}`)
	speech := parse(`{"eventId":"e2","type":"talk.speech.generated","service":"talk","createdAt":1,"data":{"voice":"nova","format":"mp3","textLength":3,"speed":1}}`)
	for query, want := range map[string][2]bool{ // sent, speech
		"":                                  {true, true},
		"recipient_domain=GMAIL.com":        {true, false},
		"recipient_domain=yahoo.com":        {false, false}, // the first recipient's domain
		"sender_domain=do.dev":              {true, false},
		"recipient=y@YAHOO.com":             {true, false},
		"recipient=X@gmail.com":             {false, false}, // the local part keeps its case
		"recipient=x@GMAIL.COM":             {true, false},
		"message_id=m1,m2":                  {true, false},
		"voice=nova&format=mp3":             {false, true},
		"voice=nova&format=wav":             {false, false},
		"sender_domain=do.dev&message_id=x": {false, false},
	} {
		q, err := url.ParseQuery(query)
		require.NoError(t, err)
		fs, err := schema.ParseFilters(q.Get, "")
		require.NoError(t, err, query)
		assert.Equal(t, want[0], fs.Match(&sent), "sent, %s", query)
		assert.Equal(t, want[1], fs.Match(&speech), "speech, %s", query)
	}
	assert.True(t, schema.LiveAll.Match(false))
	assert.False(t, schema.LiveOnly.Match(false))
	assert.True(t, schema.TestOnly.Match(false))
}
