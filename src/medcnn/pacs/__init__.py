"""A PACS over DICOMweb: fetch a study's series, run a model on them, store the results back into
the same study (``medcnn predict RUN --dicomweb URL --study UID``).

``client.py`` speaks DICOMweb (QIDO-RS, WADO-RS, STOW-RS, with dicomweb-client); ``roundtrip.py``
fetches, predicts with the run's own writers (DICOM SEG, derived series) and stores. Studies and
series are named by UID in messages and logs, never by patient."""
