package gateway

import (
	"encoding/base64"
	"strings"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

// parseRequest validates an OpenAI request body of the given kind and fills r. It reads
// only the fields sluice needs; the body itself is kept in r.Body for forwarding.
func parseRequest(p *fastjson.Parser, kind models.Kind, body []byte, r *models.Request) error {
	if len(body) == 0 {
		return models.InvalidParam("", "request body is empty: send a JSON object")
	}
	v, err := p.ParseBytes(body)
	if err != nil {
		return models.InvalidParam("", "request body is not valid JSON: %v", err)
	}
	if v.Type() != fastjson.TypeObject {
		return models.InvalidParam("", "request body must be a JSON object, got %s", v.Type())
	}
	r.Kind = kind
	r.Body = body
	model, err := str(v, "model", true)
	if err != nil {
		return err
	}
	if model == "" {
		return models.InvalidParam("model", "model must not be empty")
	}
	r.Model = model
	if u, err := str(v, "user", false); err != nil {
		return err
	} else if u != "" {
		r.User = u
		if r.Tenant == "" {
			r.Tenant = u
		}
	}
	switch kind {
	case models.KindChat:
		if err := parseMessages(v, r); err != nil {
			return err
		}
	case models.KindCompletion:
		prompts, err := strOrStrings(v, "prompt", true)
		if err != nil {
			return err
		}
		r.Prompt = prompts
	case models.KindEmbedding:
		in, err := strOrStrings(v, "input", true)
		if err != nil {
			return err
		}
		if len(in) == 0 {
			return models.InvalidParam("input", "input must not be empty")
		}
		r.Input = in
		f, err := str(v, "encoding_format", false)
		if err != nil {
			return err
		}
		if f != "" && f != "float" && f != "base64" {
			return models.InvalidParam("encoding_format", "encoding_format must be \"float\" or \"base64\", got %q", f)
		}
		r.EncodingFormat = f
		return nil
	}
	return parseSampling(v, r)
}

func parseMessages(v *fastjson.Value, r *models.Request) error {
	mv := v.Get("messages")
	if mv == nil {
		return models.InvalidParam("messages", "messages is required")
	}
	arr, err := mv.Array()
	if err != nil {
		return models.InvalidParam("messages", "messages must be an array, got %s", mv.Type())
	}
	if len(arr) == 0 {
		return models.InvalidParam("messages", "messages must contain at least one message")
	}
	r.Messages = make([]models.Message, len(arr))
	for i, m := range arr {
		if err := parseMessage(m, &r.Messages[i]); err != nil {
			// The parameter path is built only for errors (the hot path allocates none).
			return prefixParam(err, "messages["+itoa(i)+"]")
		}
	}
	return nil
}

// roleOf returns the accepted role as a constant string (no allocation per message).
func roleOf(b []byte) (string, bool) {
	switch string(b) {
	case "system":
		return "system", true
	case "developer":
		return "developer", true
	case "user":
		return "user", true
	case "assistant":
		return "assistant", true
	case "tool":
		return "tool", true
	case "function":
		return "function", true
	}
	return "", false
}

// parseMessage reads one message; errors name the field relative to the message.
func parseMessage(m *fastjson.Value, msg *models.Message) error {
	if m.Type() != fastjson.TypeObject {
		return &models.Error{Kind: models.ErrInvalid, Msg: "must be an object, got " + m.Type().String()}
	}
	rv := m.Get("role")
	if rv == nil || rv.Type() == fastjson.TypeNull {
		return models.InvalidParam("role", "role is required")
	}
	rb, err := rv.StringBytes()
	if err != nil {
		return models.InvalidParam("role", "role must be a string, got %s", rv.Type())
	}
	role, ok := roleOf(rb)
	if !ok {
		return models.InvalidParam("role", "role must be one of system, developer, user, assistant, tool; got %q", rb)
	}
	msg.Role = role
	if msg.Name, err = str(m, "name", false); err != nil {
		return err
	}
	if msg.ToolCallID, err = str(m, "tool_call_id", false); err != nil {
		return err
	}
	if tc := m.Get("tool_calls"); tc != nil && tc.Type() != fastjson.TypeNull {
		if tc.Type() != fastjson.TypeArray {
			return models.InvalidParam("tool_calls", "tool_calls must be an array")
		}
		msg.ToolCalls = tc.MarshalTo(nil)
	}
	c := m.Get("content")
	switch {
	case c == nil || c.Type() == fastjson.TypeNull:
		if role != "assistant" {
			return models.InvalidParam("content", "content is required")
		}
	case c.Type() == fastjson.TypeString:
		b, _ := c.StringBytes()
		msg.Content = string(b)
	case c.Type() == fastjson.TypeArray:
		if err := parseParts(c, msg, "content"); err != nil {
			return err
		}
	default:
		return models.InvalidParam("content", "content must be a string or an array of content parts, got %s", c.Type())
	}
	return nil
}

func parseParts(c *fastjson.Value, msg *models.Message, param string) error {
	parts, _ := c.Array()
	var sb strings.Builder
	for j, part := range parts {
		pp := param + "[" + itoa(j) + "]"
		if part.Type() != fastjson.TypeObject {
			return models.InvalidParam(pp, "%s must be an object", pp)
		}
		typ, err := str(part, "type", true)
		if err != nil {
			return prefixParam(err, pp)
		}
		switch typ {
		case "text", "input_text":
			t, err := str(part, "text", true)
			if err != nil {
				return prefixParam(err, pp)
			}
			if sb.Len() > 0 {
				sb.WriteByte('\n')
			}
			sb.WriteString(t)
		case "image_url":
			url := string(part.GetStringBytes("image_url", "url"))
			if url == "" {
				return models.InvalidParam(pp+".image_url.url", "%s.image_url.url is required", pp)
			}
			if i := strings.Index(url, ";base64,"); strings.HasPrefix(url, "data:") && i > 0 {
				img, err := base64.StdEncoding.DecodeString(url[i+8:])
				if err != nil {
					return models.InvalidParam(pp+".image_url.url", "%s.image_url.url is not valid base64 data", pp)
				}
				msg.Images = append(msg.Images, img)
			}
		default:
			// Other part types (audio, files) are forwarded untouched to OpenAI engines.
		}
	}
	msg.Content = sb.String()
	return nil
}

func parseSampling(v *fastjson.Value, r *models.Request) error {
	var err error
	if r.Stream, err = boolean(v, "stream"); err != nil {
		return err
	}
	if so := v.Get("stream_options"); so != nil && so.Type() != fastjson.TypeNull {
		if so.Type() != fastjson.TypeObject {
			return models.InvalidParam("stream_options", "stream_options must be an object")
		}
		if r.IncludeUsage, err = boolean(so, "include_usage"); err != nil {
			return prefixParam(err, "stream_options")
		}
	}
	sp := &r.Sampling
	for _, k := range []string{"max_tokens", "max_completion_tokens"} {
		n, ok, err := integer(v, k)
		if err != nil {
			return err
		}
		if ok {
			if n < 1 {
				return models.InvalidParam(k, "%s must be at least 1, got %d", k, n)
			}
			sp.MaxTokens = int(n)
		}
	}
	if n, ok, err := integer(v, "n"); err != nil {
		return err
	} else if ok && n != 1 {
		return models.InvalidParam("n", "n must be 1: sluice returns one choice per request")
	}
	if sp.Temperature, err = number(v, "temperature", 0, 2); err != nil {
		return err
	}
	if sp.TopP, err = number(v, "top_p", 0, 1); err != nil {
		return err
	}
	if sp.PresencePenalty, err = number(v, "presence_penalty", -2, 2); err != nil {
		return err
	}
	if sp.FrequencyPenalty, err = number(v, "frequency_penalty", -2, 2); err != nil {
		return err
	}
	if n, ok, err := integer(v, "seed"); err != nil {
		return err
	} else if ok {
		sp.Seed = &n
	}
	if s := v.Get("stop"); s != nil && s.Type() != fastjson.TypeNull {
		if sp.Stop, err = strOrStrings(v, "stop", false); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		k   string
		t   fastjson.Type
		dst *[]byte
	}{{"tools", fastjson.TypeArray, &r.Tools}, {"response_format", fastjson.TypeObject, &r.ResponseFormat}} {
		x := v.Get(f.k)
		if x == nil || x.Type() == fastjson.TypeNull {
			continue
		}
		if x.Type() != f.t {
			return models.InvalidParam(f.k, "%s must be an %s, got %s", f.k, f.t, x.Type())
		}
		*f.dst = x.MarshalTo(nil)
	}
	if tc := v.Get("tool_choice"); tc != nil && tc.Type() != fastjson.TypeNull {
		if tc.Type() != fastjson.TypeString && tc.Type() != fastjson.TypeObject {
			return models.InvalidParam("tool_choice", "tool_choice must be a string or an object")
		}
		r.ToolChoice = tc.MarshalTo(nil)
	}
	return nil
}

func str(v *fastjson.Value, k string, required bool) (string, error) {
	x := v.Get(k)
	if x == nil || x.Type() == fastjson.TypeNull {
		if required {
			return "", models.InvalidParam(k, "%s is required", k)
		}
		return "", nil
	}
	b, err := x.StringBytes()
	if err != nil {
		return "", models.InvalidParam(k, "%s must be a string, got %s", k, x.Type())
	}
	return string(b), nil
}

func strOrStrings(v *fastjson.Value, k string, required bool) ([]string, error) {
	x := v.Get(k)
	if x == nil || x.Type() == fastjson.TypeNull {
		if required {
			return nil, models.InvalidParam(k, "%s is required", k)
		}
		return nil, nil
	}
	switch x.Type() {
	case fastjson.TypeString:
		b, _ := x.StringBytes()
		return []string{string(b)}, nil
	case fastjson.TypeArray:
		arr, _ := x.Array()
		out := make([]string, len(arr))
		for i, e := range arr {
			b, err := e.StringBytes()
			if err != nil {
				return nil, models.InvalidParam(k, "%s must be a string or an array of strings (token arrays are not supported)", k)
			}
			out[i] = string(b)
		}
		return out, nil
	}
	return nil, models.InvalidParam(k, "%s must be a string or an array of strings, got %s", k, x.Type())
}

func boolean(v *fastjson.Value, k string) (bool, error) {
	x := v.Get(k)
	if x == nil || x.Type() == fastjson.TypeNull {
		return false, nil
	}
	b, err := x.Bool()
	if err != nil {
		return false, models.InvalidParam(k, "%s must be a boolean, got %s", k, x.Type())
	}
	return b, nil
}

func integer(v *fastjson.Value, k string) (int64, bool, error) {
	x := v.Get(k)
	if x == nil || x.Type() == fastjson.TypeNull {
		return 0, false, nil
	}
	n, err := x.Int64()
	if err != nil {
		return 0, false, models.InvalidParam(k, "%s must be an integer, got %s", k, x.Type())
	}
	return n, true, nil
}

func number(v *fastjson.Value, k string, lo, hi float64) (*float64, error) {
	x := v.Get(k)
	if x == nil || x.Type() == fastjson.TypeNull {
		return nil, nil
	}
	f, err := x.Float64()
	if err != nil {
		return nil, models.InvalidParam(k, "%s must be a number, got %s", k, x.Type())
	}
	if f < lo || f > hi {
		return nil, models.InvalidParam(k, "%s must be between %g and %g, got %g", k, lo, hi, f)
	}
	return &f, nil
}

// prefixParam puts prefix in front of an error's parameter path and message.
func prefixParam(err error, prefix string) error {
	e, ok := err.(*models.Error)
	if !ok {
		return err
	}
	e2 := *e
	if e.Param == "" {
		e2.Param = prefix
		e2.Msg = prefix + " " + e.Msg
	} else {
		e2.Param = prefix + "." + e.Param
		e2.Msg = prefix + "." + e.Msg
	}
	return &e2
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
