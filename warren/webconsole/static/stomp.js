// A small STOMP 1.2 client over the browser's WebSocket, for the console's watch panel.
//
// The console has no build step and loads no third-party script (its CSP allows only its own
// files), so it cannot use stompjs; it needs only CONNECT, SUBSCRIBE, UNSUBSCRIBE and
// DISCONNECT and reading MESSAGE/ERROR frames, which is this much. The WebSocket framing is
// the browser's own.

const ESCAPES = {"\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\c": ":"};

function escapeHeader(value) {
  return String(value).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/:/g, "\\c");
}

function unescapeHeader(value) {
  return value.replace(/\\[\\nrc]/g, (s) => ESCAPES[s]);
}

function encodeFrame(command, headers) {
  const lines = [command];
  for (const [k, v] of Object.entries(headers)) lines.push(`${escapeHeader(k)}:${escapeHeader(v)}`);
  return `${lines.join("\n")}\n\n\0`;
}

/**
 * Frames out of a byte buffer: [{command, headers, body (Uint8Array)}, rest]. A frame's body
 * ends after `content-length` bytes when given, else at the first NUL; EOLs between frames
 * are heart-beats.
 */
function decodeFrames(bytes) {
  const frames = [];
  const decoder = new TextDecoder("utf-8");
  let pos = 0;
  for (;;) {
    while (pos < bytes.length && (bytes[pos] === 10 || bytes[pos] === 13)) pos += 1;
    let headEnd = -1;
    for (let i = pos; i + 1 < bytes.length; i += 1) {
      if (bytes[i] === 10 && bytes[i + 1] === 10) { headEnd = i; break; }
      if (bytes[i] === 10 && bytes[i + 1] === 13 && bytes[i + 2] === 10) { headEnd = i; break; }
    }
    if (headEnd < 0) break;
    const head = decoder.decode(bytes.subarray(pos, headEnd)).split(/\r?\n/).map((l) => l.replace(/\r$/, ""));
    const bodyStart = headEnd + (bytes[headEnd + 1] === 13 ? 3 : 2);
    const headers = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(":");
      const key = unescapeHeader(line.slice(0, colon));
      if (!(key in headers)) headers[key] = unescapeHeader(line.slice(colon + 1));  // first wins
    }
    let bodyEnd;
    if (headers["content-length"] !== undefined) {
      bodyEnd = bodyStart + Number(headers["content-length"]);
      if (bodyEnd >= bytes.length) break;
    } else {
      bodyEnd = bytes.indexOf(0, bodyStart);
      if (bodyEnd < 0) break;
    }
    frames.push({command: head[0], headers, body: bytes.slice(bodyStart, bodyEnd)});
    pos = bodyEnd + 1;
  }
  return [frames, bytes.slice(pos)];
}

/**
 * new StompSocket(url, {login, passcode, host}, {onConnected, onReceipt, onMessage, onError, onClose}).
 * The callbacks get the decoded frame; onClose gets the WebSocket close event.
 */
export class StompSocket {
  constructor(url, connectHeaders, handlers) {
    this.handlers = handlers;
    this.buffer = new Uint8Array(0);
    this.encoder = new TextEncoder();
    this.ws = new WebSocket(url, ["v12.stomp"]);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => this.send("CONNECT", {"accept-version": "1.2", "heart-beat": "0,0", ...connectHeaders});
    this.ws.onmessage = (event) => this.received(event.data);
    this.ws.onclose = (event) => handlers.onClose && handlers.onClose(event);
    this.ws.onerror = () => {};   // a failed connection is reported by onclose
  }

  send(command, headers) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(encodeFrame(command, headers));
  }

  received(data) {
    const chunk = typeof data === "string" ? this.encoder.encode(data) : new Uint8Array(data);
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer);
    joined.set(chunk, this.buffer.length);
    const [frames, rest] = decodeFrames(joined);
    this.buffer = rest;
    for (const frame of frames) {
      if (frame.command === "CONNECTED") this.handlers.onConnected && this.handlers.onConnected(frame);
      else if (frame.command === "MESSAGE") this.handlers.onMessage && this.handlers.onMessage(frame);
      else if (frame.command === "RECEIPT") this.handlers.onReceipt && this.handlers.onReceipt(frame);
      else if (frame.command === "ERROR") this.handlers.onError && this.handlers.onError(frame);
    }
  }

  /** DISCONNECT, then close the socket (the broker drops the session's queues with it). */
  close() {
    this.send("DISCONNECT", {});
    this.ws.close(1000);
  }
}
