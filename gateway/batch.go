package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

// Batches is the Batch API's store and runner (batch.Manager implements it). Its
// methods answer with OpenAI's JSON objects; owner scopes every file and batch (the
// caller's key id, "" when authentication is off); cred is what Execute later needs to
// act for the owner (the digest of its key).
type Batches interface {
	CreateFile(ctx context.Context, owner, filename, purpose string, r io.Reader) ([]byte, error)
	File(ctx context.Context, owner, id string) ([]byte, error)
	FileContent(ctx context.Context, owner, id string) (io.ReadCloser, int64, error)
	DeleteFile(ctx context.Context, owner, id string) ([]byte, error)
	Files(ctx context.Context, owner, purpose, after string, limit int, asc bool) ([]byte, error)
	CreateBatch(ctx context.Context, owner string, cred []byte, body []byte) ([]byte, error)
	Batch(ctx context.Context, owner, id string) ([]byte, error)
	Batches(ctx context.Context, owner, after string, limit int) ([]byte, error)
	CancelBatch(ctx context.Context, owner, id string) ([]byte, error)
	MaxFileBytes() int64
}

// credKey is the RequestCtx user value through which Execute hands authorize a batch's
// credential: a value no client can set.
type credKey struct{}

// lineCtxKey is the RequestCtx user value holding the context a batch line runs under.
type lineCtxKey struct{}

// Execute runs one batch line as a POST to url with body would run, through the same
// handler (parsing, router, stages, scheduler, the Record hook), at batch priority and
// with feature as X-Sluice-Feature, authorized by cred (the digest of the batch owner's
// key). It returns the answer's status, request id and body. Batch lines are answered
// whole (never streamed).
func (s *Server) Execute(ctx context.Context, cred []byte, url string, body []byte, feature string) (int, string, []byte) {
	var h func(*Server, *fasthttp.RequestCtx)
	switch url {
	case "/v1/chat/completions":
		h = (*Server).chat
	case "/v1/completions":
		h = (*Server).completions
	case "/v1/embeddings":
		h = (*Server).embeddings
	default:
		return fasthttp.StatusNotFound, "", appendErrorJSON(nil, &models.Error{Kind: models.ErrNotFound, Code: "unknown_route",
			Msg: "batch lines can call /v1/chat/completions, /v1/completions or /v1/embeddings"}, "")
	}
	if err := ctx.Err(); err != nil {
		return 499, "", appendErrorJSON(nil, &models.Error{Kind: models.ErrCanceled, Msg: "sluice is stopping"}, "")
	}
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(url)
	req.Header.SetContentType("application/json")
	req.Header.Set("X-Sluice-Priority", "batch")
	req.Header.Set("X-Sluice-Feature", feature)
	req.SetBodyRaw(body)
	var rc fasthttp.RequestCtx
	rc.Init(&req, nil, nil)
	rc.SetUserValue(credKey{}, cred)
	rc.SetUserValue(lineCtxKey{}, ctx)
	h(s, &rc)
	out := append([]byte(nil), rc.Response.Body()...) // reads a streamed body whole
	return rc.Response.StatusCode(), string(rc.Response.Header.Peek("X-Request-Id")), out
}

// batchCred returns the credential a batch line acts with (see Execute) when the
// request came from Execute.
func batchCred(ctx *fasthttp.RequestCtx) ([]byte, bool) {
	c, ok := ctx.UserValue(credKey{}).([]byte)
	return c, ok
}

// batchAPI answers /v1/files[/{id}[/content]] and /v1/batches[/{id}[/cancel]].
func (s *Server) batchAPI(ctx *fasthttp.RequestCtx) {
	b := s.opts.Batches
	if b == nil {
		s.fail(ctx, "", "", &models.Error{Kind: models.ErrNotFound, Code: "batch_disabled",
			Msg: "the Batch API is disabled on this server (batch.enabled)"})
		return
	}
	key, err := s.authorize(ctx)
	if err != nil {
		s.fail(ctx, "", "", err)
		return
	}
	// Files and batches are the key's own; its lines later run as that key (by digest,
	// so a key revoked meanwhile stops its batch's lines).
	var owner string
	var cred []byte
	if key != nil {
		d := sha256.Sum256(bearer(ctx))
		owner, cred = key.ID, d[:]
	}
	path, method := string(ctx.Path()), string(ctx.Method())
	bg := context.Background()
	var (
		out   []byte
		allow string
	)
	// route: the resource, its id and sub-resource.
	res, rest, _ := strings.Cut(strings.TrimPrefix(path, "/v1/"), "/")
	id, sub, _ := strings.Cut(rest, "/")
	switch {
	case res == "files" && id == "":
		allow = "GET, POST"
		switch method {
		case fasthttp.MethodGet:
			q := ctx.QueryArgs()
			limit, lerr := limitArg(ctx, 10000)
			if lerr != nil {
				s.fail(ctx, "", "", lerr)
				return
			}
			order := string(q.Peek("order"))
			if order != "" && order != "asc" && order != "desc" {
				s.fail(ctx, "", "", models.InvalidParam("order", "order must be asc or desc, got %q", order))
				return
			}
			out, err = b.Files(bg, owner, string(q.Peek("purpose")), string(q.Peek("after")), limit, order == "asc")
		case fasthttp.MethodPost:
			out, err = s.upload(ctx, b, owner)
		}
	case res == "files" && sub == "":
		allow = "GET, DELETE"
		switch method {
		case fasthttp.MethodGet:
			out, err = b.File(bg, owner, id)
		case fasthttp.MethodDelete:
			out, err = b.DeleteFile(bg, owner, id)
		}
	case res == "files" && sub == "content":
		allow = "GET"
		if method == fasthttp.MethodGet {
			rc, size, err := b.FileContent(bg, owner, id)
			if err != nil {
				s.fail(ctx, "", "", err)
				return
			}
			ctx.SetContentType("application/octet-stream")
			ctx.SetBodyStream(rc, int(size)) // fasthttp closes it once sent
			return
		}
	case res == "batches" && id == "":
		allow = "GET, POST"
		switch method {
		case fasthttp.MethodGet:
			limit, lerr := limitArg(ctx, 100)
			if lerr != nil {
				s.fail(ctx, "", "", lerr)
				return
			}
			out, err = b.Batches(bg, owner, string(ctx.QueryArgs().Peek("after")), limit)
		case fasthttp.MethodPost:
			out, err = b.CreateBatch(bg, owner, cred, ctx.PostBody())
		}
	case res == "batches" && sub == "":
		allow = "GET"
		if method == fasthttp.MethodGet {
			out, err = b.Batch(bg, owner, id)
		}
	case res == "batches" && sub == "cancel":
		allow = "POST"
		if method == fasthttp.MethodPost {
			out, err = b.CancelBatch(bg, owner, id)
		}
	default:
		s.fail(ctx, "", "", &models.Error{Kind: models.ErrNotFound, Code: "unknown_route",
			Msg: fmt.Sprintf("no route for %s %s", method, path)})
		return
	}
	if out == nil && err == nil {
		ctx.Response.Header.Set("Allow", allow)
		s.fail(ctx, "", "", &models.Error{Kind: models.ErrInvalid, Status: fasthttp.StatusMethodNotAllowed,
			Code: "method_not_allowed", Msg: fmt.Sprintf("method %s is not allowed on %s; use %s", method, path, allow)})
		return
	}
	if err != nil {
		s.fail(ctx, "", "", err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

// upload stores POST /v1/files: multipart/form-data with "file" and "purpose".
func (s *Server) upload(ctx *fasthttp.RequestCtx, b Batches, owner string) ([]byte, error) {
	form, err := ctx.MultipartForm()
	if err != nil {
		return nil, models.InvalidParam("file", "send multipart/form-data with the fields file and purpose: %v", err)
	}
	purpose := ""
	if v := form.Value["purpose"]; len(v) > 0 {
		purpose = v[0]
	}
	if purpose == "" {
		return nil, models.InvalidParam("purpose", "purpose is required")
	}
	fhs := form.File["file"]
	if len(fhs) == 0 {
		return nil, models.InvalidParam("file", "file is required")
	}
	f, err := fhs[0].Open()
	if err != nil {
		return nil, models.InvalidParam("file", "the uploaded file cannot be read: %v", err)
	}
	defer f.Close()
	return b.CreateFile(context.Background(), owner, fhs[0].Filename, purpose, f)
}

func limitArg(ctx *fasthttp.RequestCtx, max int) (int, error) {
	v := ctx.QueryArgs().Peek("limit")
	if len(v) == 0 {
		return 0, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 || n > max {
		return 0, models.InvalidParam("limit", "limit must be an integer from 1 to %d, got %q", max, v)
	}
	return n, nil
}

// isUpload reports a file upload, whose body may be up to the Batch API's file limit
// rather than max_body_bytes.
func (s *Server) isUpload(h *fasthttp.RequestHeader) bool {
	if s.opts.Batches == nil || !bytes.Equal(h.Method(), []byte(fasthttp.MethodPost)) {
		return false
	}
	uri := h.RequestURI()
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return string(uri) == "/v1/files"
}

// uploadLimit is the body limit of a file upload (0: not an upload; the server's).
func (s *Server) uploadLimit(h *fasthttp.RequestHeader) int {
	if !s.isUpload(h) {
		return 0
	}
	return int(max(s.opts.Batches.MaxFileBytes()+64<<10, int64(s.opts.MaxBodyBytes))) // room for the multipart framing
}

// credKeyOf authorizes a batch line by its owner key's digest: the key as the key ring
// has it now (a revoked key's lines fail), restricted to the box's own engines.
func (s *Server) credKeyOf(cred []byte) (*models.Key, error) {
	var k *models.Key
	if s.keys != nil && s.keys.Required() {
		var d [32]byte
		if len(cred) != len(d) {
			return nil, models.Errorf(models.ErrAuth, "the batch's API key is no longer accepted")
		}
		copy(d[:], cred)
		if k = s.keys.Lookup(&d); k == nil {
			return nil, models.Errorf(models.ErrAuth, "the batch's API key is no longer accepted")
		}
	}
	local := models.Key{Residency: models.ResidencyLocalOnly}
	if k != nil {
		local = *k
		local.Residency = models.ResidencyLocalOnly
	}
	return &local, nil
}
