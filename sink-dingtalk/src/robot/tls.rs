//! TLS for the robots' client: rustls, checking DingTalk's certificate
//! against the system's roots, as reqwest's own set-up does, with one
//! difference: the roots are read the first time a certificate is checked,
//! not when the client is built. An idle sink, or one whose robots are all
//! plain `http://` stand-ins, holds no parsed roots (about 0.35 MiB for
//! Debian's bundle); Go's `crypto/x509` loads them lazily the same way.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;

/// The client's TLS: ring, TLS 1.2 and 1.3, the system's roots (loaded on
/// first use), HTTP/2 or HTTP/1.1 by ALPN as reqwest offers them.
pub(crate) fn client_config() -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SystemRoots::new(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// How long a failed read of the roots answers the handshakes that follow
/// before one reads them again: a missing bundle is not re-read for every
/// connection attempt.
const READ_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// Reads the system's roots into a verifier.
type Load = fn(Arc<CryptoProvider>) -> Result<Verifier, rustls::Error>;

/// The platform verifier, made the first time a certificate is checked.
#[derive(Debug)]
struct SystemRoots {
    provider: Arc<CryptoProvider>,
    verifier: OnceLock<Verifier>,
    load: Load,
    /// The last failed read and when, held while one reads: concurrent
    /// first handshakes wait for one read instead of each making its own.
    failed: Mutex<Option<(Instant, rustls::Error)>>,
}

fn load_system_roots(provider: Arc<CryptoProvider>) -> Result<Verifier, rustls::Error> {
    Verifier::new(provider).map_err(|err| {
        rustls::Error::General(format!(
            "cannot check DingTalk's certificate: no CA certificates could be loaded from the system ({err}); install the ca-certificates package or point SSL_CERT_FILE at a PEM bundle"
        ))
    })
}

impl SystemRoots {
    fn new(provider: Arc<CryptoProvider>) -> Self {
        Self::with_loader(provider, load_system_roots)
    }

    fn with_loader(provider: Arc<CryptoProvider>, load: Load) -> Self {
        Self {
            provider,
            verifier: OnceLock::new(),
            load,
            failed: Mutex::new(None),
        }
    }

    /// The verifier, reading the roots if this is the first check. A failed
    /// read is kept for [`READ_AGAIN_AFTER`], then a handshake tries again
    /// (once the operator has mounted the bundle, say). Reading blocks the
    /// handshake's thread for a few milliseconds.
    fn verifier(&self) -> Result<&Verifier, rustls::Error> {
        if let Some(verifier) = self.verifier.get() {
            return Ok(verifier);
        }
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(verifier) = self.verifier.get() {
            return Ok(verifier);
        }
        if let Some((at, err)) = failed.as_ref()
            && at.elapsed() < READ_AGAIN_AFTER
        {
            return Err(err.clone());
        }
        match (self.load)(Arc::clone(&self.provider)) {
            Ok(loaded) => {
                *failed = None;
                Ok(self.verifier.get_or_init(|| loaded))
            }
            Err(err) => {
                *failed = Some((Instant::now(), err.clone()));
                Err(err)
            }
        }
    }
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // The handshake's signatures need no roots: checked as the platform
    // verifier checks them, with the provider's algorithms.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_are_read_at_the_first_check_not_before() {
        let roots = SystemRoots::new(Arc::new(rustls::crypto::ring::default_provider()));
        assert!(roots.verifier.get().is_none(), "nothing read yet");
        assert!(!roots.supported_verify_schemes().is_empty());
        assert!(roots.verifier.get().is_none(), "a ClientHello reads none");
        // This machine has Debian's bundle, as the image does.
        roots.verifier().expect("the system's roots");
        assert!(roots.verifier.get().is_some(), "kept for the next checks");
    }

    static READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn no_bundle(_: Arc<CryptoProvider>) -> Result<Verifier, rustls::Error> {
        READS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(rustls::Error::General("no CA certificates".into()))
    }

    #[test]
    fn a_failed_read_answers_the_next_handshakes_until_it_is_read_again() {
        let roots = SystemRoots::with_loader(
            Arc::new(rustls::crypto::ring::default_provider()),
            no_bundle,
        );
        for _ in 0..3 {
            let err = roots.verifier().expect_err("no bundle");
            assert!(err.to_string().contains("no CA certificates"), "{err}");
        }
        assert_eq!(
            READS.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "read once"
        );
        // Past the wait, the next handshake reads again.
        if let Some((at, _)) = roots.failed.lock().unwrap().as_mut()
            && let Some(earlier) = at.checked_sub(READ_AGAIN_AFTER)
        {
            *at = earlier;
        }
        roots.verifier().expect_err("still no bundle");
        assert_eq!(READS.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
