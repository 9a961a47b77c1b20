//! The DingTalk/WeCom callback message scheme (DINGTALK.md "Message crypto", SPEC 5).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::{constant_time_eq, random_nonce, CryptoError};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Block size the scheme pads to (PKCS#7 over 32 bytes, not AES's 16).
const PAD_BLOCK: usize = 32;
/// Bytes of random prefix before the length field.
const RANDOM_LEN: usize = 16;
/// Random prefix plus the 4-byte big-endian message length.
const HEADER_LEN: usize = RANDOM_LEN + 4;
/// Characters of an Encoding AES Key as the consoles issue it.
const ENCODING_AES_KEY_LEN: usize = 43;

/// Lenient decoding, as the reference SDKs (Python's `b64decode`, Java's commons-codec) are: the consoles
/// issue keys whose last character carries non-zero trailing bits, and some senders drop the padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Encrypts, decrypts and signs callback messages for one (token, Encoding AES Key, owner key) triple.
///
/// The owner key is the AppKey, corpId or suiteKey for DingTalk, and the tenantId for the Dataphin
/// result callback.
#[derive(Clone)]
pub struct MessageCrypto {
    token: String,
    key: [u8; 32],
    owner: String,
}

/// A decrypted frame before its owner key is checked, for receivers that learn the expected owner from
/// the message itself (the Dataphin callback frames the tenantId that its document also carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message bytes (UTF-8 JSON in practice).
    pub message: Vec<u8>,
    /// The owner key framed after the message.
    pub owner: Vec<u8>,
}

/// An encrypted, signed message. Serialises as DingTalk's event acknowledgement
/// (`{"msg_signature", "timeStamp", "nonce", "encrypt"}`); the Dataphin callback sends the signature,
/// timestamp and nonce as query parameters and only `encrypt` in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedMessage {
    /// Base64 ciphertext.
    pub encrypt: String,
    /// Lowercase hex SHA-1 over token, timestamp, nonce and `encrypt`.
    #[serde(rename = "msg_signature", alias = "signature")]
    pub signature: String,
    /// The timestamp that was signed, as sent.
    #[serde(rename = "timeStamp", alias = "timestamp")]
    pub timestamp: String,
    /// The nonce that was signed.
    pub nonce: String,
}

impl fmt::Debug for MessageCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageCrypto")
            .field("token", &"<redacted>")
            .field("key", &"<redacted>")
            .field("owner", &self.owner)
            .finish()
    }
}

impl MessageCrypto {
    /// Builds the cipher. `encoding_aes_key` is the 43-character key of the console; the AES key is
    /// `base64decode(encoding_aes_key + "=")` and its first 16 bytes are the IV.
    pub fn new(token: &str, encoding_aes_key: &str, owner: &str) -> Result<Self, CryptoError> {
        let encoding_aes_key = encoding_aes_key.trim();
        if encoding_aes_key.len() != ENCODING_AES_KEY_LEN {
            return Err(CryptoError::BadKey);
        }
        let decoded = LENIENT
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = decoded.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self {
            token: token.to_owned(),
            key,
            owner: owner.to_owned(),
        })
    }

    /// The owner key this instance frames and expects.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Lowercase hex SHA-1 of token, timestamp, nonce and `encrypt`, sorted as byte strings and joined.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypt];
        parts.sort_unstable();
        let mut sha = Sha1::new();
        for part in parts {
            sha.update(part.as_bytes());
        }
        hex::encode(sha.finalize())
    }

    /// Checks `signature` (hex, either case) against the message in constant time.
    pub fn verify_signature(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<(), CryptoError> {
        let expected = self.signature(timestamp, nonce, encrypt);
        let given = signature.trim().to_ascii_lowercase();
        if constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }

    /// Encrypts `plaintext` framed with 16 fresh random bytes and this owner key; returns base64.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let mut random = [0u8; RANDOM_LEN];
        rand::thread_rng().fill_bytes(&mut random);
        self.encrypt_with_random(&random, plaintext)
    }

    /// Encrypts with a caller-chosen random prefix: deterministic, for published test vectors.
    pub fn encrypt_with_random(&self, random: &[u8; RANDOM_LEN], plaintext: &[u8]) -> String {
        let owner = self.owner.as_bytes();
        let unpadded = HEADER_LEN + plaintext.len() + owner.len();
        let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
        let mut frame = Vec::with_capacity(unpadded + pad);
        frame.extend_from_slice(random);
        let length = u32::try_from(plaintext.len()).expect("message longer than 4 GiB");
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(plaintext);
        frame.extend_from_slice(owner);
        frame.resize(unpadded + pad, pad as u8);
        let ciphertext = Aes256CbcEnc::new_from_slices(&self.key, &self.key[..16])
            .expect("32-byte key and 16-byte IV")
            .encrypt_padded_vec_mut::<NoPadding>(&frame);
        STANDARD.encode(ciphertext)
    }

    /// Decrypts `encrypt` and checks that the framed owner key is this instance's. Whitespace inside
    /// the base64 (some senders wrap lines) is ignored; any PKCS#7 pad of 1..=32 bytes is accepted.
    /// Does not check a signature: use [`MessageCrypto::open`] for untrusted input.
    pub fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>, CryptoError> {
        let frame = self.decrypt_frame(encrypt)?;
        if constant_time_eq(&frame.owner, self.owner.as_bytes()) {
            Ok(frame.message)
        } else {
            Err(CryptoError::OwnerMismatch)
        }
    }

    /// Decrypts `encrypt` and returns the message with the owner key it was framed with, unchecked.
    pub fn decrypt_frame(&self, encrypt: &str) -> Result<Frame, CryptoError> {
        let compact: Vec<u8> = encrypt
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let ciphertext = LENIENT
            .decode(&compact)
            .map_err(|_| CryptoError::BadBase64)?;
        if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
            return Err(CryptoError::BadLength);
        }
        let mut plain = Aes256CbcDec::new_from_slices(&self.key, &self.key[..16])
            .expect("32-byte key and 16-byte IV")
            .decrypt_padded_vec_mut::<NoPadding>(&ciphertext)
            .map_err(|_| CryptoError::BadLength)?;

        let pad = usize::from(*plain.last().ok_or(CryptoError::BadLength)?);
        if !(1..=PAD_BLOCK).contains(&pad)
            || pad > plain.len()
            || plain[plain.len() - pad..]
                .iter()
                .any(|&b| usize::from(b) != pad)
        {
            return Err(CryptoError::BadPadding);
        }
        plain.truncate(plain.len() - pad);

        if plain.len() < HEADER_LEN {
            return Err(CryptoError::BadLength);
        }
        let length_field: [u8; 4] = plain[RANDOM_LEN..HEADER_LEN]
            .try_into()
            .expect("4-byte slice");
        let message_end = usize::try_from(u32::from_be_bytes(length_field))
            .ok()
            .and_then(|len| HEADER_LEN.checked_add(len))
            .filter(|&end| end <= plain.len())
            .ok_or(CryptoError::BadLength)?;
        let owner = plain[message_end..].to_vec();
        plain.truncate(message_end);
        plain.drain(..HEADER_LEN);
        Ok(Frame {
            message: plain,
            owner,
        })
    }

    /// Verifies the signature first and only then decrypts: the way to read an untrusted message.
    pub fn open(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        self.verify_signature(signature, timestamp, nonce, encrypt)?;
        self.decrypt(encrypt)
    }

    /// Encrypts and signs `plaintext` with the given timestamp and nonce.
    pub fn seal(&self, plaintext: &[u8], timestamp: &str, nonce: &str) -> SealedMessage {
        let encrypt = self.encrypt(plaintext);
        let signature = self.signature(timestamp, nonce, &encrypt);
        SealedMessage {
            encrypt,
            signature,
            timestamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
        }
    }

    /// Seals with the current time in milliseconds and a fresh 16-character nonce.
    pub fn seal_now(&self, plaintext: &[u8]) -> SealedMessage {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        self.seal(plaintext, &now_ms.to_string(), &random_nonce(16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

    fn crypto(owner: &str) -> MessageCrypto {
        MessageCrypto::new("token", KEY, owner).unwrap()
    }

    /// Encrypts an arbitrary padded frame, to craft ciphertexts a correct sender would never produce.
    fn encrypt_raw(c: &MessageCrypto, frame: &[u8]) -> String {
        let ct = Aes256CbcEnc::new_from_slices(&c.key, &c.key[..16])
            .unwrap()
            .encrypt_padded_vec_mut::<NoPadding>(frame);
        STANDARD.encode(ct)
    }

    fn frame(message: &[u8], owner: &[u8]) -> Vec<u8> {
        let mut f = b"0123456789abcdef".to_vec();
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f.extend_from_slice(owner);
        f
    }

    fn padded(mut f: Vec<u8>, pad: u8) -> Vec<u8> {
        f.extend(std::iter::repeat_n(pad, usize::from(pad)));
        f
    }

    #[test]
    fn key_must_be_43_chars_of_base64() {
        assert_eq!(
            MessageCrypto::new("t", &KEY[..42], "o").unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(
            MessageCrypto::new("t", &format!("{KEY}A"), "o").unwrap_err(),
            CryptoError::BadKey
        );
        let bad_alphabet = format!("{}!", &KEY[..42]);
        assert_eq!(
            MessageCrypto::new("t", &bad_alphabet, "o").unwrap_err(),
            CryptoError::BadKey
        );
        assert!(MessageCrypto::new("t", KEY, "o").is_ok());
    }

    #[test]
    fn debug_output_hides_token_and_key() {
        let c = MessageCrypto::new("sekrit-token", KEY, "owner").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("sekrit-token"));
        assert!(shown.contains("owner"));
    }

    #[test]
    fn ciphertext_is_padded_to_32_bytes() {
        let c = crypto("o");
        for len in 0..80 {
            let enc = c.encrypt(&vec![b'x'; len]);
            let raw = STANDARD.decode(&enc).unwrap();
            assert_eq!(raw.len() % 32, 0, "len {len}");
            assert!(
                raw.len() > HEADER_LEN + len + "o".len(),
                "room for at least one pad byte"
            );
            assert_eq!(c.decrypt(&enc).unwrap(), vec![b'x'; len]);
        }
    }

    #[test]
    fn every_pad_from_1_to_32_is_accepted() {
        let c = crypto("owner");
        // 20 header + 7 message + 5 owner = 32 bytes; any pad that keeps a 16-byte multiple is legal.
        let base = frame(b"message", b"owner");
        assert_eq!(base.len(), 32);
        for pad in [16u8, 32] {
            let enc = encrypt_raw(&c, &padded(base.clone(), pad));
            assert_eq!(c.decrypt(&enc).unwrap(), b"message", "pad {pad}");
        }
        // Vary the message length so that every pad value 1..=32 occurs.
        for pad in 1u8..=32 {
            let owner_len = 5;
            let total = 64 - usize::from(pad);
            let msg = vec![b'm'; total - HEADER_LEN - owner_len];
            let enc = encrypt_raw(&c, &padded(frame(&msg, b"owner"), pad));
            assert_eq!(c.decrypt(&enc).unwrap(), msg, "pad {pad}");
        }
    }

    #[test]
    fn pad_zero_too_large_or_inconsistent_is_refused() {
        let c = crypto("owner");
        let base = frame(b"message", b"owner"); // 32 bytes
        let mut zero = base.clone();
        zero.extend([0u8; 32]);
        assert_eq!(
            c.decrypt(&encrypt_raw(&c, &zero)),
            Err(CryptoError::BadPadding)
        );

        let mut big = base.clone();
        big.extend([33u8; 32]);
        assert_eq!(
            c.decrypt(&encrypt_raw(&c, &big)),
            Err(CryptoError::BadPadding)
        );

        let mut inconsistent = padded(base.clone(), 16);
        inconsistent[40] = 15;
        assert_eq!(
            c.decrypt(&encrypt_raw(&c, &inconsistent)),
            Err(CryptoError::BadPadding)
        );
    }

    #[test]
    fn impossible_lengths_are_refused() {
        let c = crypto("owner");
        // Length field claims more bytes than the frame holds.
        let mut f = frame(b"message", b"owner");
        f[16..20].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(
            c.decrypt(&encrypt_raw(&c, &padded(f, 32))),
            Err(CryptoError::BadLength)
        );
        // Frame shorter than the random prefix and length field.
        let short = padded(vec![b'r'; 16], 16);
        assert_eq!(
            c.decrypt(&encrypt_raw(&c, &short)),
            Err(CryptoError::BadLength)
        );
        // Ciphertext not a multiple of the AES block.
        assert_eq!(
            c.decrypt(&STANDARD.encode([1u8; 20])),
            Err(CryptoError::BadLength)
        );
        assert_eq!(c.decrypt(""), Err(CryptoError::BadLength));
        assert_eq!(c.decrypt("not base64 !!"), Err(CryptoError::BadBase64));
    }

    #[test]
    fn wrong_owner_is_refused_but_frame_exposes_it() {
        let sender = crypto("ding-app-key");
        let enc = sender.encrypt(b"{}");
        let receiver = crypto("other-app-key");
        assert_eq!(receiver.decrypt(&enc), Err(CryptoError::OwnerMismatch));
        let frame = receiver.decrypt_frame(&enc).unwrap();
        assert_eq!(frame.owner, b"ding-app-key");
        assert_eq!(frame.message, b"{}");
    }

    #[test]
    fn sealed_message_serialises_as_dingtalk_ack() {
        let c = crypto("o");
        let sealed = c.seal(b"success", "1614767836", "nonce123");
        let json = serde_json::to_value(&sealed).unwrap();
        assert_eq!(json["timeStamp"], "1614767836");
        assert_eq!(json["nonce"], "nonce123");
        assert_eq!(json["msg_signature"], sealed.signature.as_str());
        assert_eq!(json["encrypt"], sealed.encrypt.as_str());
        let back: SealedMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, sealed);
    }
}
