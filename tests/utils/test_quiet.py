import logging
import warnings

from medcnn.utils.quiet import quiet_libraries


def test_quiet_libraries_drops_lightning_info_and_deprecations():
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    old = log.level
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_libraries()
            warnings.warn("old API", DeprecationWarning)
            warnings.warn("a tip", UserWarning)
            warnings.warn("kept", RuntimeWarning)
        # the level itself, not isEnabledFor: another test's library may have disabled the logger
        # (logging.config with disable_existing_loggers) or called logging.disable()
        assert log.getEffectiveLevel() == logging.WARNING
        assert [str(w.message) for w in caught] == ["kept"]
    finally:
        log.setLevel(old)
