"""pcm_l2l_ros.vision"""
