package keywrap_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// memStore is an in-memory keywrap.Store and software.BlobStore with the
// contract's errors, for unit tests.
type memStore struct {
	mu       sync.Mutex
	keks     map[string]store.KEK
	versions map[string][]store.KEKVersion
	blobs    map[string][]byte
	// failCreate, when set, is returned by CreateKEK.
	failCreate error
	reads      int
}

func newMemStore() *memStore {
	return &memStore{keks: map[string]store.KEK{}, versions: map[string][]store.KEKVersion{}, blobs: map[string][]byte{}}
}

func (m *memStore) CreateKEK(_ context.Context, k store.KEK, first store.KEKVersion) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failCreate != nil {
		return m.failCreate
	}
	if _, ok := m.keks[k.Name]; ok {
		return fmt.Errorf("KEK %q: %w", k.Name, api.ErrConflict)
	}
	m.keks[k.Name] = k
	m.versions[k.Name] = []store.KEKVersion{first}
	return nil
}

func (m *memStore) KEK(_ context.Context, name string) (store.KEK, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	k, ok := m.keks[name]
	if !ok {
		return store.KEK{}, fmt.Errorf("KEK %q: %w", name, api.ErrNotFound)
	}
	return k, nil
}

func (m *memStore) KEKVersions(_ context.Context, name string) ([]store.KEKVersion, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keks[name]; !ok {
		return nil, fmt.Errorf("KEK %q: %w", name, api.ErrNotFound)
	}
	return slices.Clone(m.versions[name]), nil
}

func (m *memStore) KEKVersion(_ context.Context, name string, version int) (store.KEKVersion, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.versions[name] {
		if v.Version == version {
			return v, nil
		}
	}
	return store.KEKVersion{}, fmt.Errorf("KEK %q version %d: %w", name, version, api.ErrNotFound)
}

func (m *memStore) RotateKEK(_ context.Context, name string, expected int, next store.KEKVersion) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keks[name]
	if !ok {
		return fmt.Errorf("KEK %q: %w", name, api.ErrNotFound)
	}
	if k.ActiveVersion != expected || next.Version != expected+1 {
		return fmt.Errorf("KEK %q: %w", name, api.ErrGenerationMismatch)
	}
	k.ActiveVersion = next.Version
	m.keks[name] = k
	m.versions[name] = append(m.versions[name], next)
	return nil
}

func (m *memStore) PutBlob(_ context.Context, ref string, blob []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[ref]; ok {
		return fmt.Errorf("blob %q: %w", ref, api.ErrConflict)
	}
	m.blobs[ref] = bytes.Clone(blob)
	return nil
}

func (m *memStore) GetBlob(_ context.Context, ref string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[ref]
	if !ok {
		return nil, fmt.Errorf("blob %q: %w", ref, api.ErrNotFound)
	}
	return bytes.Clone(b), nil
}

func (m *memStore) DeleteBlob(_ context.Context, ref string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[ref]; !ok {
		return fmt.Errorf("blob %q: %w", ref, api.ErrNotFound)
	}
	delete(m.blobs, ref)
	return nil
}

func (m *memStore) blobCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.blobs)
}

func (m *memStore) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}
