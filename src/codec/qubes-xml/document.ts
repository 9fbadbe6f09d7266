/**
 * The fence both qubes.xml readers (R4 core3, R3 core2) parse through. @xmldom/xmldom does the XML
 * grammar; around it: bounded size, UTF-8 only, no DTD at all (so no entity expansion), every
 * parser warning fatal, and attribute values free of characters XML does not allow.
 */
import { DOMParser } from "@xmldom/xmldom";
import type { Element } from "@xmldom/xmldom";
import { QbackupError } from "../../errors.js";
import { MAX_QUBES_XML_BYTES } from "./model.js";
import { hasNonXmlChar, quote } from "./names.js";

/** Longest parser message quoted in an error. */
const MAX_REASON_LENGTH = 200;
/** Any DTD construct; checked on the raw text so an entity bomb is never handed to the parser. */
const DTD_RE = /<!(?:DOCTYPE|ENTITY)/i;
const XML_DECL_ENCODING_RE = /^<\?xml\s[^>]*?\bencoding\s*=\s*(["'])([^"']*)\1/;

export class FencedXml {
  /** `what` starts every error message, e.g. `qubes.xml`. */
  constructor(private readonly what: string) {}

  fail(message: string): never {
    throw new QbackupError("ERR_QUBES_XML", `${this.what}: ${message}`);
  }

  /** The root element of a decompressed, already authenticated document. */
  parse(bytes: Uint8Array): Element {
    if (bytes.byteLength > MAX_QUBES_XML_BYTES) {
      this.fail(`${bytes.byteLength} bytes is more than the limit of ${MAX_QUBES_XML_BYTES}`);
    }
    let text: string;
    try {
      // Strips a UTF-8 BOM; anything that is not UTF-8 (UTF-16 included) fails here.
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return this.fail("not valid utf-8");
    }
    const encoding = XML_DECL_ENCODING_RE.exec(text)?.[2];
    if (encoding !== undefined && encoding.toLowerCase() !== "utf-8") {
      this.fail(`declared encoding ${quote(encoding)} is not utf-8`);
    }
    if (DTD_RE.test(text)) this.fail("document type and entity declarations are not allowed");
    if (hasNonXmlChar(text)) this.fail("contains a character xml does not allow");

    let reason: string | undefined;
    const parser = new DOMParser({
      onError: (level, msg) => {
        reason ??= `${level}: ${msg}`;
        throw new Error(msg);
      },
      // XML 1.0 line-end handling only; xmldom's default also folds NEL/LS/PS (XML 1.1) into LF.
      normalizeLineEndings: (s) => s.replace(/\r\n?/g, "\n"),
    });
    let root: Element | null;
    let hasDoctype: boolean;
    try {
      const doc = parser.parseFromString(text, "text/xml");
      root = doc.documentElement;
      hasDoctype = doc.doctype !== null;
    } catch (err) {
      return this.fail(`malformed xml: ${oneLine(reason ?? String(err))}`);
    }
    if (hasDoctype) this.fail("document type declarations are not allowed");
    return root ?? this.fail("malformed xml: no root element");
  }

  optionalAttr(el: Element, name: string, what: string): string | undefined {
    if (!el.hasAttribute(name)) return undefined;
    const v = el.getAttribute(name) ?? "";
    if (hasNonXmlChar(v)) this.fail(`${what}: ${name} attribute contains a character xml does not allow`);
    return v;
  }

  /** An attribute that must be present and non-empty. */
  requiredAttr(el: Element, name: string, what: string): string {
    const v = this.optionalAttr(el, name, what);
    if (v === undefined || v === "") this.fail(`${what}: missing ${name} attribute`);
    return v;
  }
}

/** A record without prototype: names from the file can never reach Object.prototype (`__proto__`). */
export function emptyRecord<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

function oneLine(s: string): string {
  const first = s.split(/\r?\n/, 1)[0] ?? "";
  return first.length > MAX_REASON_LENGTH ? `${first.slice(0, MAX_REASON_LENGTH)}…` : first;
}
