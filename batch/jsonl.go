package batch

import (
	"bufio"
	"bytes"
	"io"
	"strconv"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/valyala/fastjson"
)

// Endpoints a batch can target.
var endpoints = map[string]bool{"/v1/chat/completions": true, "/v1/completions": true, "/v1/embeddings": true}

// maxCustomID bounds a line's custom_id (OpenAI allows 64 characters; sluice is lenient).
const maxCustomID = 512

// request is one input line: {"custom_id","method","url","body"}.
type request struct {
	CustomID string
	Body     []byte // the JSON object sent to the endpoint (a sub-slice of the line)
}

// lineError is why a line cannot run; it goes to the error file.
type lineError struct {
	Code, Message string
}

// parseRequest reads one input line for a batch on endpoint. A line that cannot run
// returns a lineError (and the custom_id when it could be read).
func parseRequest(p *fastjson.Parser, line []byte, endpoint string) (request, *lineError) {
	var r request
	v, err := p.ParseBytes(line)
	if err != nil {
		return r, &lineError{"invalid_json", "the line is not valid JSON: " + err.Error()}
	}
	if v.Type() != fastjson.TypeObject {
		return r, &lineError{"invalid_request", "the line must be a JSON object, got " + v.Type().String()}
	}
	if c := v.Get("custom_id"); c != nil && c.Type() == fastjson.TypeString {
		r.CustomID = string(c.GetStringBytes())
	}
	switch c := v.Get("custom_id"); {
	case c == nil || c.Type() == fastjson.TypeNull:
		return r, &lineError{"missing_custom_id", "custom_id is required"}
	case c.Type() != fastjson.TypeString:
		return r, &lineError{"invalid_custom_id", "custom_id must be a string, got " + c.Type().String()}
	case r.CustomID == "" || len(r.CustomID) > maxCustomID:
		return r, &lineError{"invalid_custom_id", "custom_id must be 1 to " + strconv.Itoa(maxCustomID) + " bytes long"}
	}
	if m := v.Get("method"); m == nil || m.Type() != fastjson.TypeString || string(m.GetStringBytes()) != "POST" {
		return r, &lineError{"invalid_method", `method must be "POST"`}
	}
	if u := v.Get("url"); u == nil || u.Type() != fastjson.TypeString || string(u.GetStringBytes()) != endpoint {
		return r, &lineError{"invalid_url", "url must be the batch's endpoint, " + strconv.Quote(endpoint)}
	}
	b := v.Get("body")
	if b == nil || b.Type() != fastjson.TypeObject {
		return r, &lineError{"invalid_body", "body must be a JSON object (the request for the endpoint)"}
	}
	if s := b.Get("stream"); s != nil && s.Type() == fastjson.TypeTrue {
		return r, &lineError{"invalid_body", "body.stream must not be true: batch requests are answered whole"}
	}
	// The body's bytes as sent: find them in the line rather than re-encode.
	if s, e, ok := jsonx.Find(line, "body"); ok {
		r.Body = line[s:e]
	} else {
		r.Body = b.MarshalTo(nil)
	}
	return r, nil
}

// usage is what an answer's usage says, summed per batch.
type usage struct {
	Prompt, Completion, Cached int64
	CostUSD                    float64
}

// appendResponse encodes an output or error file line for an answer: the response with
// its status, request id and body (JSON; a body that is not JSON becomes a string).
func appendResponse(dst []byte, reqID, customID, requestID string, status int, body []byte) ([]byte, usage) {
	var u usage
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	valid := err == nil
	if valid {
		if uv := v.Get("usage"); uv != nil {
			u.Prompt = uv.GetInt64("prompt_tokens")
			u.Completion = uv.GetInt64("completion_tokens")
			u.Cached = uv.GetInt64("prompt_tokens_details", "cached_tokens")
			u.CostUSD = uv.GetFloat64("cost_usd")
		}
	}
	dst = appendHead(dst, reqID, customID)
	dst = append(dst, `,"response":{"status_code":`...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, `,"request_id":`...)
	dst = jsonx.AppendString(dst, requestID)
	dst = append(dst, `,"body":`...)
	if valid {
		dst = append(dst, bytes.TrimSpace(body)...)
	} else {
		dst = jsonx.AppendString(dst, string(body))
	}
	return append(dst, `},"error":null}`...), u
}

// appendLineError encodes an error file line for a request that got no answer.
func appendLineError(dst []byte, reqID, customID string, e *lineError) []byte {
	dst = appendHead(dst, reqID, customID)
	dst = append(dst, `,"response":null,"error":{"code":`...)
	dst = jsonx.AppendString(dst, e.Code)
	dst = append(dst, `,"message":`...)
	dst = jsonx.AppendString(dst, e.Message)
	return append(dst, "}}"...)
}

func appendHead(dst []byte, reqID, customID string) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsonx.AppendString(dst, reqID)
	dst = append(dst, `,"custom_id":`...)
	if customID == "" {
		return append(dst, "null"...)
	}
	return jsonx.AppendString(dst, customID)
}

// requestID is a line's id in the output files: stable across retries and restarts.
func requestID(batchID string, idx int64) string {
	return "batch_req_" + batchID[len("batch_"):] + "_" + strconv.FormatInt(idx, 10)
}

// scanLines calls f with each non-blank line of r (without its line ending) and the
// line's offset in r. A last line without a newline counts.
func scanLines(r io.Reader, f func(off int64, line []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	for {
		line, err := br.ReadBytes('\n')
		n := int64(len(line))
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(bytes.TrimSpace(line)) > 0 {
				if ferr := f(off, line); ferr != nil {
					return ferr
				}
			}
		}
		off += n
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
