#!/usr/bin/env python3
"""Runs DingTalk's callback message crypto as PyPI `dingtalk-sdk` implements it, so that the bridge's own
implementation (shared/crypto) is checked against an independent one (shared/crypto/tests/interop.rs).

    dingtalk_interop.py encrypt <token> <aes_key> <owner> <plaintext>
        prints {"msg_signature", "timeStamp", "nonce", "encrypt"} as the SDK builds it
    dingtalk_interop.py decrypt <token> <aes_key> <owner> <json>
        <json> is {"msg_signature", "timeStamp", "nonce", "encrypt"}; verifies the signature, decrypts,
        checks the owner key, prints the plaintext (UTF-8, no trailing newline)

Exit status 2 on usage errors, 1 when the SDK refuses the message (the reason on stderr).
"""
import json
import sys

from dingtalk.crypto import DingTalkCrypto


def main(argv):
    if len(argv) != 6 or argv[1] not in ("encrypt", "decrypt"):
        sys.stderr.write(__doc__)
        return 2
    mode, token, aes_key, owner, payload = argv[1:]
    crypto = DingTalkCrypto(token, aes_key, owner)
    if mode == "encrypt":
        sealed = crypto.encrypt_message(payload)
        sys.stdout.write(json.dumps(sealed))
        return 0
    message = json.loads(payload)
    try:
        plaintext = crypto.decrypt_encrypt_str(
            message["msg_signature"], message["timeStamp"], message["nonce"], message["encrypt"]
        )
    except Exception as exc:  # the SDK raises its own exception types without messages
        sys.stderr.write("refused: %s\n" % type(exc).__name__)
        return 1
    sys.stdout.buffer.write(plaintext.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
