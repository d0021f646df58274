"""Faces in photos: MTCNN detection with 5 landmarks (`detect`), similarity alignment to a face
template, the inverse warp and soft pasting (`align`), and face restorers (`restore`: GPEN, the
oracle)."""
