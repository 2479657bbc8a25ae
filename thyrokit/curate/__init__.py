"""Raw scans to de-identified, scan-area-cropped images and nodule patches."""
