"""Transfer learning (issue #6): pretrained weights into any task's network, fine-tuning strategies."""
from medcnn.transfer.weights import LoadReport, load_pretrained, read_state_dict

__all__ = ["LoadReport", "load_pretrained", "read_state_dict"]
