package dashboard

import (
	"embed"
	"mime"
	"path"
)

//go:embed assets
var assets embed.FS

// Asset is the package's Asset (so a *Sampler serves the whole page).
func (s *Sampler) Asset(name string) (string, []byte, bool) { return Asset(name) }

// Asset returns one of the page's files ("" is the page itself) and its content type.
// They carry no data: the page asks for the admin key and fetches the points with it.
func Asset(name string) (contentType string, body []byte, ok bool) {
	if name == "" {
		name = "index.html"
	}
	if path.Clean(name) != name || path.IsAbs(name) {
		return "", nil, false
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return "", nil, false
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return ct, b, true
}
