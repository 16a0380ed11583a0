package pkcs11

import (
	"context"
	"slices"

	"github.com/ThalesGroup/crypto11"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
)

// ListKeys returns the label of every secret key and private key in the
// token, for the reconciler (pkg/reconcile), except the health key. A key's
// label is its clusterkeys ref. PKCS#11 objects carry no creation time, so
// Created is zero: the reconciler counts its safety window from the first
// time it saw the key. Objects without a label are left out; the reconciler
// touches only labels of the form clusterkeys gives its keys.
func (c *Custody) ListKeys(ctx context.Context) ([]keys.Listed, error) {
	var labels []string
	err := c.runConn(ctx, "list keys", false, func(cn *conn) error {
		cx := cn.cx
		labels = labels[:0]
		secret, err := cx.FindAllKeys()
		if err != nil {
			return backend("list keys: find secret keys", err)
		}
		for _, k := range secret {
			l, err := label(cx, k)
			if err != nil {
				return err
			}
			labels = append(labels, l)
		}
		private, err := cx.FindPrivateKeysWithAttributes(crypto11.NewAttributeSet())
		if err != nil {
			return backend("list keys: find private keys", err)
		}
		for _, k := range private {
			l, err := label(cx, k)
			if err != nil {
				return err
			}
			labels = append(labels, l)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(labels)
	labels = slices.Compact(labels)
	out := make([]keys.Listed, 0, len(labels))
	for _, l := range labels {
		if l != "" && l != HealthKeyLabel {
			out = append(out, keys.Listed{Ref: l})
		}
	}
	return out, nil
}

// label returns the CKA_LABEL of key k ("" when it has none).
func label(cx *crypto11.Context, k any) (string, error) {
	a, err := cx.GetAttribute(k, crypto11.CkaLabel)
	if err != nil {
		return "", backend("list keys: read label", err)
	}
	if a == nil {
		return "", nil
	}
	return string(a.Value), nil
}
