package keys

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/internal/httpapi"
)

// ctxKey is where Authenticate leaves the request's Key.
const ctxKey = "hindsight.key"

// Authenticate is the middleware in front of every /v1 route: it answers
// 401 without a known key and 503 when the keys cannot be read, and leaves
// the key for Require.
func (c *Checker) Authenticate(g *gin.Context) {
	secret, ok := strings.CutPrefix(g.GetHeader("Authorization"), "Bearer ")
	if !ok || secret == "" {
		httpapi.Abort(g, http.StatusUnauthorized, "unauthorized", "missing bearer key: send Authorization: Bearer <key>")
		return
	}
	k, err := c.Check(g.Request.Context(), secret)
	switch {
	case errors.Is(err, ErrUnknown):
		httpapi.Abort(g, http.StatusUnauthorized, "unauthorized", "wrong API key")
		return
	case err != nil:
		g.Header("Retry-After", "1")
		httpapi.Abort(g, http.StatusServiceUnavailable, "keys_unavailable", "API keys cannot be checked now; retry shortly")
		return
	}
	g.Set(ctxKey, k)
	g.Next()
}

// Require answers 403 unless the request's key holds scope s. It runs after
// Authenticate.
func Require(s Scope) gin.HandlerFunc {
	return func(g *gin.Context) {
		if !keyOf(g).Has(s) {
			httpapi.Abort(g, http.StatusForbidden, "forbidden", "needs scope "+string(s))
			return
		}
		g.Next()
	}
}

func keyOf(g *gin.Context) Key {
	k, _ := g.Get(ctxKey)
	key, _ := k.(Key)
	return key
}

// API serves /v1/keys.
type API struct {
	checker *Checker
	log     *slog.Logger
}

// NewAPI builds the key routes on the checker's store.
func NewAPI(checker *Checker, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{checker: checker, log: log}
}

// Register adds the routes to a group behind Authenticate.
func (a *API) Register(g *gin.RouterGroup) {
	g.POST("/keys", Require(KeysAdmin), a.create)
	g.GET("/keys", Require(KeysAdmin), a.list)
	g.DELETE("/keys/:id", Require(KeysAdmin), a.revoke)
}

type keyView struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	Prefix     string  `json:"prefix"`
	Scopes     []Scope `json:"scopes"`
	CreatedAt  string  `json:"created_at"`
	LastUsedAt *string `json:"last_used_at"`
	Key        string  `json:"key,omitempty"` // only when created
}

func view(k Key) keyView {
	v := keyView{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Scopes: k.Scopes, CreatedAt: httpapi.FormatTime(k.CreatedAt)}
	if !k.LastUsed.IsZero() {
		at := httpapi.FormatTime(k.LastUsed)
		v.LastUsedAt = &at
	}
	return v
}

func (a *API) fail(g *gin.Context, err error) { httpapi.Fail(g, a.log, err, ErrNotFound) }

func (a *API) create(g *gin.Context) {
	var in struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := httpapi.DecodeJSON(g, &in); err != nil {
		a.fail(g, err)
		return
	}
	if err := ValidateName(in.Name); err != nil {
		a.fail(g, &httpapi.BadParam{Param: "name", Msg: err.Error()})
		return
	}
	scopes, err := ParseScopes(in.Scopes)
	if err != nil {
		a.fail(g, &httpapi.BadParam{Param: "scopes", Msg: err.Error()})
		return
	}
	caller := keyOf(g)
	for _, s := range scopes {
		if !caller.Has(s) {
			httpapi.Abort(g, http.StatusForbidden, "forbidden", "a key can only create keys with scopes it holds; this one lacks "+string(s))
			return
		}
	}
	k, secret, err := a.checker.store.Create(g.Request.Context(), in.Name, scopes)
	if err != nil {
		a.fail(g, err)
		return
	}
	a.reload(g)
	v := view(k)
	v.Key = secret
	g.JSON(http.StatusCreated, v)
}

func (a *API) list(g *gin.Context) {
	ks, err := a.checker.store.List(g.Request.Context())
	if err != nil {
		a.fail(g, err)
		return
	}
	pending := a.checker.pendingUses()
	out := make([]keyView, 0, len(ks))
	for _, k := range ks {
		if at, ok := pending[k.ID]; ok && time.UnixMilli(at).After(k.LastUsed) {
			k.LastUsed = time.UnixMilli(at).UTC()
		}
		out = append(out, view(k))
	}
	g.JSON(http.StatusOK, gin.H{"data": out})
}

func (a *API) revoke(g *gin.Context) {
	id := g.Param("id")
	if id == Bootstrap.ID {
		httpapi.Abort(g, http.StatusBadRequest, "invalid_parameter", "id: the bootstrap key is HINDSIGHT_API_KEY; change it where the API runs")
		return
	}
	if err := a.checker.store.Revoke(g.Request.Context(), id); err != nil {
		a.fail(g, err)
		return
	}
	a.reload(g)
	g.JSON(http.StatusOK, gin.H{"id": id, "revoked": true})
}

// reload makes this process see a change at once; the others see it within
// MaxAge.
func (a *API) reload(g *gin.Context) {
	if err := a.checker.Reload(g.Request.Context()); err != nil {
		a.log.Warn("read API keys after a change", "err", err)
	}
}
