package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

// Keys resolves API keys (ledger.KeyRing implements it).
type Keys interface {
	// Lookup returns the active key whose SHA-256 digest is d, or nil. It runs on every
	// request: a map lookup in a snapshot, no lock, no I/O.
	Lookup(d *[32]byte) *models.Key
	// Required reports whether requests must carry a key (some key exists).
	Required() bool
}

// staticKeys is Options.APIKeys as a Keys: each key's tenant is its id.
type staticKeys map[[32]byte]*models.Key

func newStaticKeys(digests [][32]byte) staticKeys {
	m := make(staticKeys, len(digests))
	for _, d := range digests {
		id := models.KeyID(d)
		m[d] = &models.Key{ID: id, Tenant: id, Residency: models.ResidencyAny}
	}
	return m
}

func (m staticKeys) Lookup(d *[32]byte) *models.Key { return m[*d] }
func (m staticKeys) Required() bool                 { return len(m) > 0 }

// bearer returns the request's API key: Authorization: Bearer, or X-Api-Key.
func bearer(ctx *fasthttp.RequestCtx) []byte {
	key, ok := bytes.CutPrefix(ctx.Request.Header.Peek("Authorization"), []byte("Bearer "))
	if !ok {
		key = ctx.Request.Header.Peek("X-Api-Key") // Anthropic-style clients
	}
	return key
}

// authorize returns the request's key (nil when authentication is off).
func (s *Server) authorize(ctx *fasthttp.RequestCtx) (*models.Key, error) {
	if cred, ok := batchCred(ctx); ok { // a batch line (Execute)
		return s.credKeyOf(cred)
	}
	if s.keys == nil || !s.keys.Required() {
		return nil, nil
	}
	key := bearer(ctx)
	if len(key) == 0 {
		return nil, models.Errorf(models.ErrAuth, "missing API key: send Authorization: Bearer <key>")
	}
	sum := sha256.Sum256(key)
	if k := s.keys.Lookup(&sum); k != nil {
		return k, nil
	}
	return nil, models.Errorf(models.ErrAuth, "invalid API key")
}

// isAdmin reports whether the request carries an admin key (constant-time compares
// against every admin key's digest).
func (s *Server) isAdmin(ctx *fasthttp.RequestCtx) bool {
	key := bearer(ctx)
	if len(key) == 0 || len(s.opts.AdminKeys) == 0 {
		return false
	}
	sum := sha256.Sum256(key)
	found := 0
	for i := range s.opts.AdminKeys {
		found |= subtle.ConstantTimeCompare(sum[:], s.opts.AdminKeys[i][:])
	}
	return found == 1
}

// checkAdmin refuses requests without an admin key.
func (s *Server) checkAdmin(ctx *fasthttp.RequestCtx) error {
	if len(s.opts.AdminKeys) == 0 {
		return models.Errorf(models.ErrForbidden, "admin endpoints are closed: configure server.admin_keys")
	}
	if len(bearer(ctx)) == 0 {
		return models.Errorf(models.ErrAuth, "admin endpoints need an admin key: send Authorization: Bearer <admin key>")
	}
	if !s.isAdmin(ctx) {
		return models.Errorf(models.ErrAuth, "admin endpoints need an admin key: invalid admin key")
	}
	return nil
}

// usageReport answers GET /v1/usage: the caller's own key's usage, or anyone's with an
// admin key.
func (s *Server) usageReport(ctx *fasthttp.RequestCtx) {
	if s.opts.Usage == nil {
		s.fail(ctx, "", "", &models.Error{Kind: models.ErrNotFound, Code: "ledger_disabled", Msg: "usage reports need the ledger (it is disabled)"})
		return
	}
	admin := s.isAdmin(ctx)
	var key *models.Key
	if !admin {
		var err error
		if key, err = s.authorize(ctx); err != nil {
			s.fail(ctx, "", "", err)
			return
		}
	}
	ctype, body, err := s.opts.Usage(context.Background(), key, admin, string(ctx.QueryArgs().QueryString()))
	if err != nil {
		s.fail(ctx, "", "", err)
		return
	}
	ctx.SetContentType(ctype)
	ctx.SetBody(body)
}

// adminKeys answers /admin/keys and /admin/keys/{id} (admin key required).
func (s *Server) adminKeys(ctx *fasthttp.RequestCtx) {
	if err := s.checkAdmin(ctx); err != nil {
		s.fail(ctx, "", "", err)
		return
	}
	if s.opts.KeyAdmin == nil {
		s.fail(ctx, "", "", &models.Error{Kind: models.ErrNotFound, Code: "ledger_disabled", Msg: "keys are managed in the ledger (it is disabled)"})
		return
	}
	id := strings.TrimPrefix(strings.TrimPrefix(string(ctx.Path()), "/admin/keys"), "/")
	status, body, err := s.opts.KeyAdmin(context.Background(), string(ctx.Method()), id, ctx.PostBody())
	if err != nil {
		s.fail(ctx, "", "", err)
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}
