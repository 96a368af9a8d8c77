"""Small real PDFs for tests and the sample corpus: a text page, an image-only page, an encrypted copy."""

import io


def pdf_bytes(pages: list[bytes], resources: bytes = b"<< /Font << /F1 5 0 R >> >>", extra_objects: list[bytes] = ()) -> bytes:
    """A PDF with one content stream per page; objects 1 catalog, 2 pages, 5 font, then extras, then pages."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", None, None, None, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    objects[2:4] = [b"<< >>", b"<< >>"]  # unused slots keep object numbers fixed
    objects += list(extra_objects)
    kids = []
    for content in pages:
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        stream_number = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources %s /Contents %d 0 R >>" % (resources, stream_number))
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def text_pdf(lines: list[str]) -> bytes:
    escaped = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1") for line in lines]
    content = b"BT /F1 12 Tf 72 720 Td 14 TL " + b" ".join(b"(%s) Tj T*" % line for line in escaped) + b" ET"
    return pdf_bytes([content])


def image_only_pdf() -> bytes:
    """A scanned page: one grey 8x8 image and no text operators."""
    pixels = bytes(range(0, 256, 4))
    image = b"<< /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray /BitsPerComponent 8 /Length %d >>\nstream\n" % len(pixels) + pixels + b"\nendstream"
    return pdf_bytes([b"q 200 0 0 200 72 500 cm /Im1 Do Q"], resources=b"<< /XObject << /Im1 6 0 R >> >>", extra_objects=[image])


def encrypted_pdf(lines: list[str], password: str = "s3cret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(lines))))
    writer.encrypt(user_password=password, owner_password=password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
