package rendezvous

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Labels for the TLS keying-material exporter (RFC 5705/8446). Each side of each protocol
// uses its own label, so that a proof made by one side can never be presented as the other
// side's.
const (
	LabelStoreClient = "EXPORTER-ringtrain-store-client"
	LabelStoreServer = "EXPORTER-ringtrain-store-server"
	LabelLinkDialer  = "EXPORTER-ringtrain-link-dialer"
	LabelLinkAccept  = "EXPORTER-ringtrain-link-acceptor"
)

// ProofLen is the length in bytes of a token proof (an HMAC-SHA256).
const ProofLen = sha256.Size

// TokenProof returns HMAC-SHA256(token, EKM || context) where EKM is 32 bytes of keying
// material exported from the TLS session state under label. context binds extra claims into
// the proof (for example the rank a dialer claims to be); it may be nil.
func TokenProof(state tls.ConnectionState, token, label string, context []byte) ([]byte, error) {
	ekm, err := state.ExportKeyingMaterial(label, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: export TLS keying material: %w", err)
	}
	m := hmac.New(sha256.New, []byte(token))
	m.Write(ekm)
	m.Write(context)
	return m.Sum(nil), nil
}

// CheckTokenProof reports, in constant time, whether proof is the TokenProof for the same
// state, token, label and context.
func CheckTokenProof(state tls.ConnectionState, token, label string, context, proof []byte) bool {
	want, err := TokenProof(state, token, label, context)
	if err != nil {
		return false
	}
	return hmac.Equal(want, proof)
}

// EphemeralCertificate makes a fresh self-signed ECDSA P-256 certificate valid for a day,
// for a process's TLS endpoints. Peers never trust it through a CA: the store's server is
// authenticated by its token proof, and ring links pin the certificate's [Fingerprint]
// published in the authenticated store.
func EphemeralCertificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("rendezvous: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("rendezvous: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "ringtrain ephemeral"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"ringtrain"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("rendezvous: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("rendezvous: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Fingerprint is the SHA-256 of a certificate's DER encoding.
func Fingerprint(der []byte) [32]byte { return sha256.Sum256(der) }

// ErrAuth is wrapped by errors reporting that a peer failed to prove the job token (or that we
// were refused because we failed to).
var ErrAuth = errors.New("authentication failed")
