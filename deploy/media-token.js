// Media tokens checked inside nginx (njs; README "Edge delivery"; the rule's owner is
// videoflix/accounts/tokens.py, read_media_token: this is the same rule, line by line).
//
// /api/media/<user36>.<version36>.<expiry36>.<admin>.<session>.<mac>/<id>/v<N>/<file>
// <mac> = unpadded base64url of HMAC-SHA256(key, "/<id>/v<N>/:<the five fields>"), the
// key being the ASCII of the 64 hex digits `videoflix media-key` prints (derived from
// SECRET_KEY), given to nginx as $videoflix_media_key. Whether the session may still
// watch is Videoflix's answer to auth_request, cached a few seconds (deploy/nginx.conf).
const crypto = require('crypto');

const TOKEN_PATH = new RegExp('^/api/media/'
    + '(([0-9a-z]{1,13})\\.[0-9a-z]{1,13}\\.([0-9a-z]{1,13})\\.[01]\\.[0-9a-f]{32})\\.([A-Za-z0-9_-]{43})'
    + '(/[1-9][0-9]{0,17}/v[1-9][0-9]{0,8}/)');

// "1" when the token in the request's path opens the folder it names, else "0".
function verdict(r) {
    const key = r.variables.videoflix_media_key;
    const m = TOKEN_PATH.exec(r.uri);
    if (!m || !key || key.length !== 64) return '0';
    if (parseInt(m[3], 36) * 1000 <= Date.now()) return '0';  // expired
    const mac = crypto.createHmac('sha256', key).update(m[5] + ':' + m[1]).digest('base64url');
    return mac === m[4] ? '1' : '0';
}

// The header form's token (VIDEOFLIX_MEDIA_TOKEN_FORM=header:<name>, the same value in
// $videoflix_media_token_form): the value of that request header when it is sent exactly
// once, else "" (as Videoflix reads it: videoflix/delivery/tokenforms.py). Its shape is
// checked in deploy/nginx.conf before it goes anywhere; the verdict above checks the rest.
function header_token(r) {
    const m = /^header:([A-Za-z][A-Za-z0-9-]{0,63})$/.exec(r.variables.videoflix_media_token_form || '');
    if (!m) return '';
    const name = m[1].toLowerCase();
    const values = r.rawHeadersIn.filter((header) => header[0].toLowerCase() === name);
    return values.length === 1 ? values[0][1] : '';
}

export default { verdict, header_token };
