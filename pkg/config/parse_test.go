package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		maxArgs int
		want    []string // in the error; none means no error
	}{
		{name: "known flags parse", args: []string{"--listen", "127.0.0.1:1", "--insecure-http"}},
		{name: "an unknown flag is named", args: []string{"--bogus"}, want: []string{"unknown flag: --bogus"}},
		{name: "a misspelled flag is named", args: []string{"--lsten=127.0.0.1:1"}, want: []string{"--lsten"}},
		{name: "a flag missing its value is named", args: []string{"--listen"}, want: []string{"needs an argument", "--listen"}},
		{name: "a value of the wrong type is named", args: []string{"--auth-cache-ttl", "soon"}, want: []string{"--auth-cache-ttl", "soon"}},
		{name: "an unknown shorthand is named", args: []string{"-z"}, want: []string{"'z'"}},
		{name: "a stray argument is named", args: []string{"extra"}, want: []string{`unexpected argument "extra"`}},
		{name: "allowed arguments pass", args: []string{"signcsr"}, maxArgs: 1},
		{name: "one too many arguments is named", args: []string{"signcsr", "keywrap"}, maxArgs: 1, want: []string{`"keywrap"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			fs := pflag.NewFlagSet("localrun serve", pflag.ContinueOnError)
			fs.SetOutput(&strings.Builder{})
			c.BindFlags(fs)
			err := Parse(fs, tt.args, tt.maxArgs)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want a *UsageError", err)
			}
			for _, w := range append(tt.want, "localrun serve: ", "Run 'localrun serve --help'") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
		})
	}
	t.Run("--help is not a usage error", func(t *testing.T) {
		fs := pflag.NewFlagSet("kmsshim", pflag.ContinueOnError)
		fs.SetOutput(&strings.Builder{})
		if err := Parse(fs, []string{"--help"}, 0); !errors.Is(err, pflag.ErrHelp) {
			t.Fatalf("err = %v, want pflag.ErrHelp", err)
		}
	})
}

func TestResolveWantsTheWholeTLSPair(t *testing.T) {
	for _, tt := range []struct {
		name      string
		cert, key string
		ok        bool
	}{
		{"no TLS", "", "", true},
		{"certificate and key", "tls.crt", "tls.key", true},
		{"a certificate without its key", "tls.crt", "", false},
		{"a key without its certificate", "", "tls.key", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.TLSCertFile, c.TLSPrivateKeyFile = tt.cert, tt.key
			_, err := c.Resolve()
			if ok := err == nil; ok != tt.ok {
				t.Fatalf("Resolve: %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), "--tls-private-key-file") {
				t.Errorf("%v does not name the flags", err)
			}
		})
	}
}
