// Package config loads sluice's one YAML file: strict (an unknown key is an error that
// names its path, e.g. `engines[0].slotz`), with ${VAR} and ${VAR:-default} expanded in
// values (secrets stay in the environment), defaults that let `sluice serve` start with
// no file at all (the embedded default.yaml), and Validate messages that name the field.
//
// It is the only package that reads the environment. It must not import other sluice
// packages except models.
package config
