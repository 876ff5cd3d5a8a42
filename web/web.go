// Package web holds Parley's browser app, built by `npm run build` into
// dist/ and embedded here, so parleyd serves it with no npm step at run time.
package web

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// Dist returns the built app: index.html at the root and content-hashed
// files under assets/.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path; fs.Sub cannot fail on it
	}
	return sub
}
