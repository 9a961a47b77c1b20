//! Any plaintext sealed under any key and owner opens to itself, and only under that key and owner.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use crypto::{CryptoError, MessageCrypto};
use proptest::prelude::*;

fn encoding_aes_key(bytes: &[u8; 32]) -> String {
    let key = STANDARD_NO_PAD.encode(bytes);
    assert_eq!(key.len(), 43);
    key
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn seal_then_open_round_trips(
        key in any::<[u8; 32]>(),
        token in "[ -~]{0,40}",
        owner in "\\PC{0,40}",
        plaintext in proptest::collection::vec(any::<u8>(), 0..600),
        timestamp in "[0-9]{10,13}",
        nonce in "[A-Za-z0-9]{1,16}",
    ) {
        let c = MessageCrypto::new(&token, &encoding_aes_key(&key), &owner).unwrap();
        let sealed = c.seal(&plaintext, &timestamp, &nonce);
        prop_assert_eq!(sealed.timestamp.as_str(), timestamp.as_str());
        prop_assert_eq!(
            c.open(&sealed.signature, &sealed.timestamp, &sealed.nonce, &sealed.encrypt).unwrap(),
            plaintext.clone()
        );
        let frame = c.decrypt_frame(&sealed.encrypt).unwrap();
        prop_assert_eq!(frame.owner, owner.as_bytes().to_vec());

        let mut other_owner = owner.clone();
        other_owner.push('x');
        let other = MessageCrypto::new(&token, &encoding_aes_key(&key), &other_owner).unwrap();
        prop_assert_eq!(other.decrypt(&sealed.encrypt), Err(CryptoError::OwnerMismatch));
    }

    #[test]
    fn fresh_random_prefix_makes_every_ciphertext_different(
        key in any::<[u8; 32]>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let c = MessageCrypto::new("t", &encoding_aes_key(&key), "owner").unwrap();
        prop_assert_ne!(c.encrypt(&plaintext), c.encrypt(&plaintext));
    }

    #[test]
    fn a_different_key_never_opens_the_message(
        key in any::<[u8; 32]>(),
        other_key in any::<[u8; 32]>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        prop_assume!(key != other_key);
        let c = MessageCrypto::new("t", &encoding_aes_key(&key), "owner").unwrap();
        let other = MessageCrypto::new("t", &encoding_aes_key(&other_key), "owner").unwrap();
        let enc = c.encrypt(&plaintext);
        // Wrong key garbles the frame: padding, length or owner is wrong, never a silent success.
        prop_assert!(other.decrypt(&enc).is_err());
    }
}
