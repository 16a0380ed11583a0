// Package barbican keeps clusterkeys' CA private keys and KEK versions as
// OpenStack Barbican secrets (gophercloud keymanager v1).
//
// A CA key is a Barbican "private" secret holding its PKCS#8 DER; a KEK
// version is a "symmetric" secret of 32 random bytes (AES-256). Key
// material is fetched for each operation and dropped after it: nothing is
// cached in clusterkeys, so revoking access in Barbican takes effect at
// once. The mapping from a clusterkeys key ref to the secret's href is kept
// in the metadata store (the keys.BlobStore the software custody also uses),
// under "barbican/<ref>", so a load is one Barbican call.
//
// # Errors
//
// Barbican answering 401 or 403 wraps keys.ErrBackend (502, with the
// reason); 404 wraps keys.ErrNotFound; 5xx, a refused connection or a
// timeout wrap keys.ErrUnavailable (503, Retry-After). A secret created for a
// key whose store record then cannot be written is deleted again, so a
// failed operation leaves no orphaned secret behind.
package barbican

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/keymanager/v1/secrets"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/clusterkeys/clusterkeys/pkg/barbicanerr"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
)

// Config says how to reach Barbican.
type Config struct {
	// Endpoint is Barbican's base URL, e.g. http://127.0.0.1:9311.
	Endpoint string
	// Project is sent as X-Project-Id when Client is nil: Barbican's
	// unauthenticated pipeline, for tests and single-tenant set-ups.
	Project string
	// Client, when set, is an authenticated Keystone provider client; its
	// token is sent instead of X-Project-Id.
	Client *gophercloud.ProviderClient
	// Timeout bounds each Barbican call; 10 s when 0.
	Timeout time.Duration
	// Logger receives what the reaper of unanswered creates does (never
	// key material); discarded when nil.
	Logger *slog.Logger
}

// Custody keeps keys as Barbican secrets.
type Custody struct {
	sc      *gophercloud.ServiceClient
	blobs   keys.BlobStore
	timeout time.Duration
	log     *slog.Logger

	// The reaper of creates whose outcome is unknown (see reap).
	reapFor    time.Duration // give up when Barbican stays silent this long
	reapSettle time.Duration // keep looking this long once it answers
	reapStep   time.Duration // first wait between passes
	reaping    sync.WaitGroup

	hrefs sync.Map // ref → secret href, read from the store once
}

var _ keys.Custody = (*Custody)(nil)

// Open returns a custody over Barbican at cfg.Endpoint. It does not call
// Barbican; Check does.
func Open(cfg Config, blobs keys.BlobStore) (*Custody, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("barbican custody: no endpoint (--barbican-endpoint)")
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("barbican custody: endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	endpoint := strings.TrimSuffix(cfg.Endpoint, "/") + "/"
	pc := cfg.Client
	if pc == nil {
		if cfg.Project == "" {
			return nil, errors.New("barbican custody: without Keystone a project (--barbican-project) is required")
		}
		pc = &gophercloud.ProviderClient{HTTPClient: http.Client{Timeout: cfg.Timeout}}
	}
	sc := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: endpoint, ResourceBase: endpoint + "v1/"}
	if cfg.Client == nil {
		sc.MoreHeaders = map[string]string{"X-Project-Id": cfg.Project}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Custody{sc: sc, blobs: blobs, timeout: cfg.Timeout, log: log,
		reapFor: 15 * time.Minute, reapSettle: 30 * time.Second, reapStep: time.Second}, nil
}

func mappingKey(ref string) string { return "barbican/" + ref }

// create stores payload as a secret named ref and records its href; on any
// failure after the secret exists, the secret is deleted again.
func (c *Custody) create(ctx context.Context, ref string, opts secrets.CreateOpts) error {
	if ref == "" {
		return errors.New("barbican custody: empty key ref")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	opts.Name = ref
	s, err := secrets.Create(ctx, c.sc, opts).Extract()
	if err != nil {
		err = classify(fmt.Sprintf("create secret %q", ref), err)
		if errors.Is(err, keys.ErrUnavailable) {
			// No answer (a timeout, a dropped connection, a 5xx): Barbican
			// may still store the secret, and nothing would ever name it.
			c.reapLater(ref)
		}
		return err
	}
	if err := c.blobs.PutBlob(ctx, mappingKey(ref), []byte(s.SecretRef)); err != nil {
		if derr := c.deleteSecret(context.WithoutCancel(ctx), s.SecretRef); derr != nil {
			return fmt.Errorf("barbican custody: record %q: %w (and the secret %s could not be deleted: %v)", ref, err, s.SecretRef, derr)
		}
		return fmt.Errorf("barbican custody: record %q: %w", ref, err)
	}
	return nil
}

// reapLater looks, in the background, for a secret named ref that a create
// without an answer may still leave in Barbican, and deletes it: a failed
// rekey must leave no orphaned secret, even when Barbican hung rather than
// refused. It tries until Barbican answers (for at most reapFor), then keeps
// looking for reapSettle, since a queued create can land after the first
// answer. A process that exits meanwhile leaves the secret, which the log
// names.
func (c *Custody) reapLater(ref string) {
	c.log.Warn("barbican custody: a create got no answer; its secret will be deleted if it appears", "ref", ref)
	c.reaping.Add(1)
	go func() {
		defer c.reaping.Done()
		c.reap(ref)
	}()
}

func (c *Custody) reap(ref string) {
	start := time.Now()
	wait := c.reapStep
	var answered time.Time
	for {
		n, err := c.deleteByName(context.Background(), ref)
		if n > 0 {
			c.log.Info("barbican custody: deleted the secret of a create that got no answer", "ref", ref, "secrets", n)
		}
		if err == nil && answered.IsZero() {
			answered = time.Now()
		}
		switch {
		case !answered.IsZero() && time.Since(answered) >= c.reapSettle:
			return
		case answered.IsZero() && time.Since(start) >= c.reapFor:
			c.log.Error("barbican custody: Barbican did not answer; a secret of this name may be orphaned, delete it by hand",
				"ref", ref, "err", err)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 15*time.Second)
	}
}

// deleteByName deletes every secret named ref and returns how many.
func (c *Custody) deleteByName(ctx context.Context, ref string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	pages, err := secrets.List(c.sc, secrets.ListOpts{Name: ref, Limit: 10}).AllPages(ctx)
	if err != nil {
		return 0, classify("list secrets named "+ref, err)
	}
	found, err := secrets.ExtractSecrets(pages)
	if err != nil {
		return 0, fmt.Errorf("barbican custody: list secrets named %q: %w", ref, err)
	}
	n := 0
	for _, s := range found {
		if s.Name != ref { // Barbican's name filter is exact; be sure
			continue
		}
		if err := c.deleteSecret(ctx, s.SecretRef); err != nil {
			return n, classify("delete secret named "+ref, err)
		}
		n++
	}
	return n, nil
}

// href returns the secret href of ref. The mapping never changes while the
// key exists, so it is read from the store once per process; the key
// material itself is fetched from Barbican for every operation.
func (c *Custody) href(ctx context.Context, ref string) (string, error) {
	if h, ok := c.hrefs.Load(ref); ok {
		return h.(string), nil
	}
	b, err := c.blobs.GetBlob(ctx, mappingKey(ref))
	if err != nil {
		return "", err
	}
	c.hrefs.Store(ref, string(b))
	return string(b), nil
}

func (c *Custody) payload(ctx context.Context, ref string) ([]byte, error) {
	href, err := c.href(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("barbican custody: key %q: %w", ref, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	b, err := secrets.GetPayload(ctx, c.sc, secretID(href), secrets.GetPayloadOpts{PayloadContentType: "application/octet-stream"}).Extract()
	if err != nil {
		return nil, classify(fmt.Sprintf("fetch secret of key %q", ref), err)
	}
	return b, nil
}

func (c *Custody) deleteSecret(ctx context.Context, href string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := secrets.Delete(ctx, c.sc, secretID(href)).ExtractErr()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	}
	return err
}

func secretID(href string) string {
	return href[strings.LastIndex(href, "/")+1:]
}

// GenerateSigner creates a CA key of algorithm alg and stores it in Barbican
// as a private secret named ref.
func (c *Custody) GenerateSigner(ctx context.Context, ref string, alg keys.Algorithm) (crypto.Signer, error) {
	k, err := keys.GenerateSoftware(alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("barbican custody: encode key: %w", err)
	}
	if err := c.create(ctx, ref, secrets.CreateOpts{
		SecretType: secrets.PrivateSecret, Algorithm: algorithmName(alg),
		Payload: base64.StdEncoding.EncodeToString(der), PayloadContentType: "application/octet-stream",
		PayloadContentEncoding: "base64",
	}); err != nil {
		return nil, err
	}
	return k, nil
}

func algorithmName(a keys.Algorithm) string {
	if strings.HasPrefix(string(a), "rsa") {
		return "rsa"
	}
	return "ec"
}

// Signer fetches the key named ref from Barbican.
func (c *Custody) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	der, err := c.payload(ctx, ref)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("barbican custody: key %q is not PKCS#8: %w", ref, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("barbican custody: key %q cannot sign", ref)
	}
	return s, nil
}

// Destroy deletes the secret of ref and its record; a missing one is not
// an error. Without a record (a process that died between creating the
// secret and recording it) it deletes every secret named ref.
func (c *Custody) Destroy(ctx context.Context, ref string) error {
	c.hrefs.Delete(ref)
	href, err := c.blobs.GetBlob(ctx, mappingKey(ref))
	if errors.Is(err, keys.ErrNotFound) {
		if _, err := c.deleteByName(ctx, ref); err != nil {
			return fmt.Errorf("barbican custody: destroy %q: %w", ref, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("barbican custody: destroy %q: %w", ref, err)
	}
	if err := c.deleteSecret(ctx, string(href)); err != nil {
		return classify(fmt.Sprintf("delete secret of key %q", ref), err)
	}
	return c.blobs.DeleteBlob(ctx, mappingKey(ref))
}

// GenerateKEK creates a 256-bit AES key as a symmetric secret named ref.
func (c *Custody) GenerateKEK(ctx context.Context, ref string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	return c.create(ctx, ref, secrets.CreateOpts{
		SecretType: secrets.SymmetricSecret, Algorithm: "aes", BitLength: 256, Mode: "gcm",
		Payload: base64.StdEncoding.EncodeToString(key), PayloadContentType: "application/octet-stream",
		PayloadContentEncoding: "base64",
	})
}

func (c *Custody) aead(ctx context.Context, ref string) (cipher.AEAD, error) {
	key, err := c.payload(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("barbican custody: KEK %q is %d bytes, want 32", ref, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext under the KEK ref, binding aad: nonce || ct || tag.
func (c *Custody) Seal(ctx context.Context, ref string, plaintext, aad []byte) ([]byte, error) {
	a, err := c.aead(ctx, ref)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plaintext)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, plaintext, aad), nil
}

// Open decrypts what Seal returned; an inauthentic ciphertext wraps
// keys.ErrDecrypt.
func (c *Custody) Open(ctx context.Context, ref string, ciphertext, aad []byte) ([]byte, error) {
	a, err := c.aead(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < a.NonceSize()+a.Overhead() {
		return nil, fmt.Errorf("barbican custody: KEK %q: ciphertext too short: %w", ref, keys.ErrDecrypt)
	}
	pt, err := a.Open(nil, ciphertext[:a.NonceSize()], ciphertext[a.NonceSize():], aad)
	if err != nil {
		return nil, fmt.Errorf("barbican custody: KEK %q: %w", ref, keys.ErrDecrypt)
	}
	return pt, nil
}

// Check lists one secret: Barbican answers and accepts our credentials.
func (c *Custody) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// One page only: AllPages would follow Barbican's next links and cost
	// a request per secret on every readiness probe.
	err := secrets.List(c.sc, secrets.ListOpts{Limit: 1}).EachPage(ctx, func(context.Context, pagination.Page) (bool, error) {
		return false, nil
	})
	if err != nil {
		return classify("list secrets", err)
	}
	return nil
}

// classify wraps err with the api sentinel its cause maps to (see
// barbicanerr.Classify), as an error of Barbican custody.
func classify(what string, err error) error {
	return fmt.Errorf("barbican custody: %w", barbicanerr.Classify(what, err))
}
